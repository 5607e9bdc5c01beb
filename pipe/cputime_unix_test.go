//go:build unix

package pipe

import (
	"syscall"
	"time"
)

// cpuTime returns the CPU time (user and system) this process used so far.
// Benchmarks report it beside wall time: the machine is shared, and wall
// time also counts the time other processes held the CPU.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
