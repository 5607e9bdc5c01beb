//go:build !unix

package detect

import "time"

// cpuTime is not available here; benchmarks then report no CPU metrics.
func cpuTime() time.Duration { return 0 }
