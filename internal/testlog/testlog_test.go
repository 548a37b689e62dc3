package testlog_test

import (
	"log/slog"
	"testing"

	"github.com/postyard-mail/postyard/internal/testlog"
)

// TestLevelAndLateLines: lines below the level are not written, and a line
// logged after the test ended does not panic.
func TestLevelAndLateLines(t *testing.T) {
	var late *slog.Logger
	t.Run("inner", func(t *testing.T) {
		late = testlog.New(t, slog.LevelInfo)
		if late.Enabled(t.Context(), slog.LevelDebug) {
			t.Error("debug enabled at level info")
		}
		if !late.Enabled(t.Context(), slog.LevelInfo) {
			t.Error("info disabled at level info")
		}
		late.Info("during the test")
	})
	late.Info("after the test") // would panic in t.Log
}
