//go:build unix

package detect

import (
	"syscall"
	"time"
)

// cpuTime returns the CPU time (user and system) used so far by this
// process. Benchmarks report it beside wall time because the machines they
// run on are shared: wall time also counts the time other processes held
// the CPU.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
