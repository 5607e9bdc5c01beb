package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat. It
// is 100 on every Linux architecture Go supports (the kernel exports it to
// user space as a fixed ABI value), so one tick is 10 ms.
const clockTicks = 100

// tick is the duration of one clock tick.
const tick = time.Second / clockTicks

// procStat is what the harness reads of /proc/PID/stat.
type procStat struct {
	PPID  int
	UTime uint64 // clock ticks in user mode
	STime uint64 // clock ticks in kernel mode
}

// parseStat parses the contents of /proc/PID/stat. The second field, the
// command name in parentheses, may itself hold spaces and parentheses, so
// the fields are counted from the last ')'.
func parseStat(data []byte) (procStat, error) {
	end := bytes.LastIndexByte(data, ')')
	if end < 0 {
		return procStat{}, errors.New("stat: no command name")
	}
	// Fields after the name start at field 3 (state).
	f := strings.Fields(string(data[end+1:]))
	const (
		ppid  = 4 - 3
		utime = 14 - 3
		stime = 15 - 3
	)
	if len(f) <= stime {
		return procStat{}, fmt.Errorf("stat: %d fields after the command name, want at least %d", len(f), stime+1)
	}
	var s procStat
	var err error
	if s.PPID, err = strconv.Atoi(f[ppid]); err != nil {
		return procStat{}, fmt.Errorf("stat: ppid: %w", err)
	}
	if s.UTime, err = strconv.ParseUint(f[utime], 10, 64); err != nil {
		return procStat{}, fmt.Errorf("stat: utime: %w", err)
	}
	if s.STime, err = strconv.ParseUint(f[stime], 10, 64); err != nil {
		return procStat{}, fmt.Errorf("stat: stime: %w", err)
	}
	return s, nil
}

// parseRSS returns VmRSS, in KiB, from the contents of /proc/PID/status.
func parseRSS(data []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("status: VmRSS %q: want \"N kB\"", rest)
		}
		return strconv.ParseInt(f[0], 10, 64)
	}
	// Kernel threads and zombies have no VmRSS line.
	return 0, errors.New("status: no VmRSS line")
}

// readStat reads /proc/PID/stat.
func readStat(pid int) (procStat, error) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, err
	}
	return parseStat(data)
}

// cpuTime returns the CPU time (user plus system) the processes have used.
func cpuTime(pids []int) (time.Duration, error) {
	var ticks uint64
	for _, pid := range pids {
		s, err := readStat(pid)
		if err != nil {
			return 0, err
		}
		ticks += s.UTime + s.STime
	}
	return time.Duration(ticks) * tick, nil
}

// rssKiB returns the processes' resident set size, summed, in KiB.
func rssKiB(pids []int) (int64, error) {
	var sum int64
	for _, pid := range pids {
		data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
		if err != nil {
			return 0, err
		}
		kb, err := parseRSS(data)
		if err != nil {
			return 0, fmt.Errorf("pid %d: %w", pid, err)
		}
		sum += kb
	}
	return sum, nil
}

// children returns the pids of the processes whose parent is ppid.
func children(ppid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if s, err := readStat(pid); err == nil && s.PPID == ppid {
			out = append(out, pid)
		}
	}
	return out
}

// loadAverage returns the 1-minute load average, or 0 when it cannot be
// read.
func loadAverage() float64 {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// openFiles returns how many file descriptors the processes hold: for a
// proxy, about two per client connection plus its upstream connections.
func openFiles(pids []int) (int, error) {
	n := 0
	for _, pid := range pids {
		ents, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "fd"))
		if err != nil {
			return 0, err
		}
		n += len(ents)
	}
	return n, nil
}

// parseBusy returns the busy and total clock ticks of all CPUs from the
// contents of /proc/stat: busy is user, nice, system, irq, softirq and
// steal; total adds idle and iowait.
func parseBusy(data []byte) (busy, total uint64, err error) {
	line, _, _ := bytes.Cut(data, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("stat: first line %q is not the cpu total", line)
	}
	var v [8]uint64
	for i := range v {
		if v[i], err = strconv.ParseUint(f[i+1], 10, 64); err != nil {
			return 0, 0, fmt.Errorf("stat: cpu field %d: %w", i+1, err)
		}
	}
	const user, nice, system, idle, iowait, irq, softirq, steal = 0, 1, 2, 3, 4, 5, 6, 7
	busy = v[user] + v[nice] + v[system] + v[irq] + v[softirq] + v[steal]
	return busy, busy + v[idle] + v[iowait], nil
}

// machineCPU reads the busy and total ticks of the machine.
func machineCPU() (busy, total uint64, err error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	return parseBusy(data)
}
