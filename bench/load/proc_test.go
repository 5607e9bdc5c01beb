package main

import (
	"os"
	"strings"
	"testing"
)

func TestParseStat(t *testing.T) {
	// A real line (kernel 6.x), with the fields the harness reads: ppid 4,
	// utime 14 = 1234, stime 15 = 567.
	const line = "4242 (iatp) S 4200 4242 4200 0 -1 4194560 3089 0 0 0 1234 567 0 0 20 0 9 0 777 1283297280 4096 18446744073709551615 1 1 0 0 0 0 0 0 2143420159 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
	tests := []struct {
		name    string
		in      string
		want    procStat
		wantErr string
	}{
		{"plain", line, procStat{PPID: 4200, UTime: 1234, STime: 567}, ""},
		{"name with spaces and parens", strings.Replace(line, "(iatp)", "(nginx: worker (x) y)", 1), procStat{PPID: 4200, UTime: 1234, STime: 567}, ""},
		{"no name", "4242 iatp S 1 2 3", procStat{}, "no command name"},
		{"truncated", "4242 (iatp) S 4200 4242 4200 0 -1 4194560 3089 0 0 0 1234", procStat{}, "fields after the command name"},
		{"bad utime", strings.Replace(line, " 1234 ", " x ", 1), procStat{}, "utime"},
		{"bad ppid", strings.Replace(line, " 4200 4242", " p 4242", 1), procStat{}, "ppid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStat([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseStat error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("parseStat = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestParseRSS(t *testing.T) {
	const status = "Name:\tiatp\nUmask:\t0022\nState:\tS (sleeping)\nVmPeak:\t 1253196 kB\nVmRSS:\t   16120 kB\nRssAnon:\t    6012 kB\n"
	tests := []struct {
		name    string
		in      string
		want    int64
		wantErr string
	}{
		{"real", status, 16120, ""},
		{"no line (kernel thread)", "Name:\tkthreadd\nState:\tS\n", 0, "no VmRSS"},
		{"other unit", "VmRSS:\t 16 MB\n", 0, "want"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseRSS([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseRSS error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("parseRSS = %d, %v; want %d", got, err, tt.want)
			}
		})
	}
}

// TestProcSelf reads this process's own entries, so the parsers are checked
// against what the running kernel writes.
func TestProcSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc on this system")
	}
	pid := os.Getpid()
	s, err := readStat(pid)
	if err != nil {
		t.Fatal(err)
	}
	if s.PPID != os.Getppid() {
		t.Errorf("ppid = %d, want %d", s.PPID, os.Getppid())
	}
	// Burn a little CPU so at least the counters are readable; only their
	// being non-decreasing is asserted, which holds on any machine.
	before, err := cpuTime([]int{pid})
	if err != nil {
		t.Fatal(err)
	}
	x := 0
	for i := range 5_000_000 {
		x += i & 3
	}
	after, err := cpuTime([]int{pid})
	if err != nil {
		t.Fatal(err)
	}
	if after < before || before%tick != 0 {
		t.Errorf("cpuTime went from %v to %v (x=%d)", before, after, x)
	}
	kb, err := rssKiB([]int{pid})
	if err != nil || kb <= 0 {
		t.Errorf("rssKiB = %d, %v; want > 0", kb, err)
	}
	if n, err := openFiles([]int{pid}); err != nil || n < 3 {
		t.Errorf("openFiles = %d, %v; want at least stdin, stdout and stderr", n, err)
	}
	if _, err := cpuTime([]int{pid, -1}); err == nil {
		t.Error("cpuTime of a missing process succeeded")
	}
}

func TestParseBusy(t *testing.T) {
	busy, total, err := parseBusy([]byte("cpu  100 5 50 1000 20 3 2 1 0 0\ncpu0 50 2 25 500 10 1 1 0 0 0\n"))
	if err != nil || busy != 100+5+50+3+2+1 || total != busy+1000+20 {
		t.Fatalf("parseBusy = %d, %d, %v; want 161, 1181", busy, total, err)
	}
	for _, bad := range []string{"", "cpu0 1 2 3 4 5 6 7 8\n", "cpu 1 2 3\n", "cpu 1 2 x 4 5 6 7 8\n"} {
		if _, _, err := parseBusy([]byte(bad)); err == nil {
			t.Errorf("parseBusy(%q) succeeded", bad)
		}
	}
	if _, err := os.Stat("/proc/stat"); err == nil {
		if b, tot, err := machineCPU(); err != nil || b == 0 || tot < b {
			t.Errorf("machineCPU = %d, %d, %v", b, tot, err)
		}
	}
}
