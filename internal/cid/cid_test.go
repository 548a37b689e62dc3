package cid_test

import (
	"bytes"
	"log/slog"
	"regexp"
	"strings"
	"testing"

	"github.com/postyard-mail/postyard/internal/cid"
)

func TestNewShapeAndUniqueness(t *testing.T) {
	re := regexp.MustCompile(`^[a-z2-7]{10}$`)
	seen := make(map[string]bool)
	for range 10000 {
		id := cid.New()
		if !re.MatchString(id) {
			t.Fatalf("id %q does not match %s", id, re)
		}
		if seen[id] {
			t.Fatalf("id %q repeated", id)
		}
		seen[id] = true
	}
}

func TestWithAttachesID(t *testing.T) {
	var buf bytes.Buffer
	logger, id := cid.With(slog.New(slog.NewTextHandler(&buf, nil)))
	logger.Info("hello")
	if want := "cid=" + id; !strings.Contains(buf.String(), want) {
		t.Fatalf("log line %q lacks %q", buf.String(), want)
	}
}
