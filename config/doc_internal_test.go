package config

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// leafKeys lists the dotted TOML key of every field of t, recursing into
// tables.
func leafKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		name := tagName(f)
		if name == "" || name == "-" {
			continue
		}
		if f.Type.Kind() == reflect.Struct {
			keys = append(keys, leafKeys(f.Type, prefix+name+".")...)
			continue
		}
		keys = append(keys, prefix+name)
	}
	return keys
}

// TestExampleDocumentsEveryKey fails when a field of Config is missing from
// config.example.toml, or has no comment: on its line, or on the lines just
// above it (a group of keys may share one comment).
func TestExampleDocumentsEveryKey(t *testing.T) {
	data, err := os.ReadFile("../config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	idx, err := buildIndex(data)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	keys := leafKeys(reflect.TypeFor[Config](), "")
	if len(keys) < 40 {
		t.Fatalf("only %d keys found in Config: leafKeys is broken", len(keys))
	}
	for _, key := range keys {
		info, ok := idx.keys[key]
		if !ok {
			t.Errorf("config.example.toml does not show %s", key)
			continue
		}
		if !commented(lines, info.line) {
			t.Errorf("config.example.toml:%d: %s has no comment", info.line, key)
		}
	}
	// And nothing in the example that Config lacks (Load would refuse it
	// anyway; this names it).
	known := map[string]bool{}
	for _, k := range keys {
		known[k] = true
	}
	for k := range idx.keys {
		if !known[k] {
			t.Errorf("config.example.toml has %s, which is not a key of Config", k)
		}
	}
}

// commented reports whether the key on line (1-based) has a comment on that
// line or on a comment line above it, before any blank line or table header.
func commented(lines []string, line int) bool {
	if strings.Contains(lines[line-1], "#") {
		return true
	}
	for i := line - 2; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		switch {
		case strings.HasPrefix(l, "#"):
			return true
		case l == "" || strings.HasPrefix(l, "["):
			return false
		}
	}
	return false
}

func TestEditDistance(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"smtp", "smtp", 0}, {"smpt", "smtp", 1}, {"hostnme", "hostname", 1},
		{"max_recipent", "max_recipients", 2}, {"foo", "log", 2}, {"", "abc", 3},
	} {
		if got := editDistance(tt.a, tt.b); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}
