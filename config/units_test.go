package config_test

import (
	"testing"
	"time"

	"github.com/postyard-mail/postyard/config"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want config.Size
		err  bool
	}{
		{"25MB", 25_000_000, false},
		{"25mb", 25_000_000, false},
		{"25 MB", 25_000_000, false},
		{"512KiB", 512 << 10, false},
		{"1.5GB", 1_500_000_000, false},
		{"1.5KiB", 1536, false},
		{"1000", 1000, false},
		{"1000B", 1000, false},
		{"0", 0, false},
		{"8EiB", 0, true},
		{"9223372036854775807B", 9223372036854775807, false},
		{"9223372036854775808", 0, true},
		{"20000000TB", 0, true},
		{"25XB", 0, true},
		{"-5MB", 0, true},
		{"", 0, true},
		{"MB", 0, true},
		{"1.2.3MB", 0, true},
		{".5MB", 0, true},
		{"5.MB", 0, true},
		{"1e3", 0, true},
	}
	for _, tt := range tests {
		got, err := config.ParseSize(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestSizeString(t *testing.T) {
	for _, tt := range []struct {
		in   config.Size
		want string
	}{
		{0, "0B"}, {1, "1B"}, {1000, "1KB"}, {1024, "1KiB"}, {25_000_000, "25MB"},
		{25 << 20, "25MiB"}, {1536, "1536B"}, {3 << 40, "3TiB"}, {2e12, "2TB"},
	} {
		if got := tt.in.String(); got != tt.want {
			t.Errorf("Size(%d).String() = %q, want %q", int64(tt.in), got, tt.want)
		}
		back, err := config.ParseSize(tt.in.String())
		if err != nil || back != tt.in {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tt.in.String(), back, err, int64(tt.in))
		}
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{"5m", 5 * time.Minute, false},
		{"1h30m", 90 * time.Minute, false},
		{"90s", 90 * time.Second, false},
		{"1.5s", 1500 * time.Millisecond, false},
		{"5d", 5 * 24 * time.Hour, false},
		{"1d12h", 36 * time.Hour, false},
		{"0s", 0, false},
		{"0", 0, false},
		{"-5m", 0, true},
		{"1d-5m", 0, true},
		{"5", 0, true},
		{"5x", 0, true},
		{"d", 0, true},
		{"1.5d", 0, true},
		{"+1d", 0, true},
		{"5 minutes", 0, true},
		{"", 0, true},
		{"106752d", 0, true},
		{"106751d23h", 106751*24*time.Hour + 23*time.Hour, false},
		{"106751d24h", 0, true},
	}
	for _, tt := range tests {
		got, err := config.ParseDuration(tt.in)
		if (err != nil) != tt.err || got.D() != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v, error %v", tt.in, got.D(), err, tt.want, tt.err)
		}
	}
}

func TestDurationString(t *testing.T) {
	for _, tt := range []struct {
		in   time.Duration
		want string
	}{
		{0, "0s"}, {time.Second, "1s"}, {5 * time.Minute, "5m"}, {90 * time.Minute, "1h30m"},
		{5 * 24 * time.Hour, "5d"}, {36*time.Hour + time.Second, "1d12h1s"}, {1500 * time.Millisecond, "1.5s"},
	} {
		d := config.Duration(tt.in)
		if got := d.String(); got != tt.want {
			t.Errorf("Duration(%v).String() = %q, want %q", tt.in, got, tt.want)
		}
		back, err := config.ParseDuration(d.String())
		if err != nil || back != d {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", d.String(), back, err, tt.in)
		}
	}
}
