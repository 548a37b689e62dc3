// Package benchmeter reports the throughput figures of the message
// benchmarks (smtp, delivery/relay): messages per second, and the CPU time of
// the whole process (server and client) per message, which varies less than
// msg/s with other load on a shared machine. One implementation keeps the
// figures in docs/performance computed the same way.
package benchmeter

import (
	"syscall"
	"testing"
	"time"
)

// Meter measures from Start to Report.
type Meter struct{ cpu0 time.Duration }

// Start takes the process's CPU time now.
func Start() Meter { return Meter{cpu0: CPUTime()} }

// Report adds msg/s (b.N over b.Elapsed) and cpu-µs/msg (CPU time since
// Start over b.N) to b's results.
func (m Meter) Report(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
	b.ReportMetric(float64((CPUTime()-m.cpu0).Microseconds())/float64(b.N), "cpu-µs/msg")
}

// CPUTime is the user and system CPU time of this process so far (0 if the
// system does not say).
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
