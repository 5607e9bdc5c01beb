package main

import (
	"bufio"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// Machine describes where the figures were measured.
type Machine struct {
	Date      string  `json:"date"`
	CPU       string  `json:"cpu"`
	Cores     int     `json:"cores"`
	MemoryGiB float64 `json:"memory_gib"`
	OS        string  `json:"os"`
	Kernel    string  `json:"kernel"`
	Go        string  `json:"go"`
	Nginx     string  `json:"nginx,omitempty"`
	IATP      string  `json:"iatp"`
	Commit    string  `json:"commit,omitempty"`
	TempFS    string  `json:"temp_fs"` // the file system of the sidecar's data dir
}

// describeMachine reads /proc and the binaries' versions.
func describeMachine(h *harness) Machine {
	m := Machine{
		Date:   time.Now().UTC().Format("2006-01-02 15:04 UTC"),
		Cores:  runtime.NumCPU(),
		Go:     runtime.Version(),
		Nginx:  h.nginxVersion,
		Kernel: strings.TrimSpace(readFile("/proc/sys/kernel/osrelease")),
		CPU:    procField("/proc/cpuinfo", "model name", ":"),
		OS:     strings.Trim(procField("/etc/os-release", "PRETTY_NAME", "="), `"`),
		TempFS: fsType(h.tmp),
	}
	if kb := procField("/proc/meminfo", "MemTotal", ":"); kb != "" {
		var n float64
		for _, c := range strings.TrimSuffix(kb, " kB") {
			if c >= '0' && c <= '9' {
				n = n*10 + float64(c-'0')
			}
		}
		m.MemoryGiB = n / (1 << 20)
	}
	if out, err := exec.Command(h.iatpBin, "version").Output(); err == nil {
		m.IATP = strings.TrimSpace(string(out))
	}
	if h.opts.IATPBin == "" {
		if root, err := repoRoot(); err == nil {
			if out, err := exec.Command("git", "-C", root, "describe", "--always", "--dirty", "--abbrev=7").Output(); err == nil {
				m.Commit = strings.TrimSpace(string(out))
			}
		}
	}
	return m
}

func readFile(path string) string {
	data, _ := os.ReadFile(path)
	return string(data)
}

// procField returns the value of the first "key<sep>value" line of a file.
func procField(path, key, sep string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), sep)
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
