package benchmeter_test

import (
	"testing"
	"time"

	"github.com/postyard-mail/postyard/internal/benchmeter"
)

// TestCPUTimeAdvances: burning CPU shows in CPUTime.
func TestCPUTimeAdvances(t *testing.T) {
	before := benchmeter.CPUTime()
	if before <= 0 {
		t.Fatalf("CPUTime %v at the start of a test process", before)
	}
	x := 0
	for start := time.Now(); time.Since(start) < 50*time.Millisecond; {
		x++
	}
	if after := benchmeter.CPUTime(); after <= before {
		t.Errorf("CPUTime %v after a busy loop (%d rounds), %v before", after, x, before)
	}
}
