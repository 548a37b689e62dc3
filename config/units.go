package config

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"
)

// sizeUnits are the accepted suffixes of a Size, largest first so that
// MarshalText picks the shortest exact spelling. Decimal units are powers of
// 1000 (SI), binary ones powers of 1024 (IEC).
var sizeUnits = []struct {
	name string
	mult int64
}{
	{"TiB", 1 << 40}, {"TB", 1e12},
	{"GiB", 1 << 30}, {"GB", 1e9},
	{"MiB", 1 << 20}, {"MB", 1e6},
	{"KiB", 1 << 10}, {"KB", 1e3},
	{"B", 1},
}

// ParseSize reads "25MB", "512KiB", "1.5GB", "1000B" or a plain byte count
// "1000". Units are case-insensitive; negative sizes are refused.
func ParseSize(s string) (Size, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, errors.New(`empty size (write e.g. "25MB", "512KiB" or a number of bytes)`)
	}
	if t[0] == '-' {
		return 0, fmt.Errorf("size %q must not be negative", s)
	}
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.TrimSpace(t[i:])
	mult := int64(-1)
	if unit == "" {
		mult = 1
	}
	for _, u := range sizeUnits {
		if strings.EqualFold(unit, u.name) {
			mult = u.mult
		}
	}
	if mult < 0 {
		return 0, fmt.Errorf("size %q has an unknown unit %q (use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)", s, unit)
	}
	if num == "" || strings.Count(num, ".") > 1 || num[0] == '.' || num[len(num)-1] == '.' {
		return 0, fmt.Errorf("size %q is not a number with an optional unit (e.g. \"25MB\")", s)
	}
	// Exact decimal arithmetic: "1.5GB" is 1500000000 bytes, no float rounding.
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, fmt.Errorf("size %q is not a number", s)
	}
	r.Mul(r, new(big.Rat).SetInt64(mult))
	n := new(big.Int).Quo(r.Num(), r.Denom()) // whole bytes, rounded down
	if !n.IsInt64() {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return Size(n.Int64()), nil
}

// String spells the size with the largest unit that divides it exactly.
func (s Size) String() string {
	if s == 0 {
		return "0B"
	}
	for _, u := range sizeUnits {
		if s%Size(u.mult) == 0 {
			return strconv.FormatInt(int64(s)/u.mult, 10) + u.name
		}
	}
	return strconv.FormatInt(int64(s), 10) + "B" // negative sizes never validate; spelled for messages only
}

// UnmarshalText implements encoding.TextUnmarshaler, so go-toml reports a bad
// size with its line.
func (s *Size) UnmarshalText(b []byte) error {
	v, err := ParseSize(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// MarshalText implements encoding.TextMarshaler ("25MB").
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

const day = 24 * time.Hour

// ParseDuration reads Go duration syntax ("90s", "5m", "1h30m") plus a
// leading whole number of days ("5d", "1d12h"). Negative durations are
// refused.
func ParseDuration(s string) (Duration, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, errors.New(`empty duration (write e.g. "30s", "5m", "1h" or "5d")`)
	}
	if t[0] == '-' {
		return 0, fmt.Errorf("duration %q must not be negative", s)
	}
	var days int64
	if i := strings.IndexByte(t, 'd'); i >= 0 {
		n, err := strconv.ParseInt(t[:i], 10, 64)
		if err != nil || t[0] == '+' || n > int64(math.MaxInt64/day) {
			return 0, fmt.Errorf("duration %q: days must be a whole number in front, as in \"5d\" or \"1d12h\"", s)
		}
		days, t = n, t[i+1:]
		if t == "" {
			return Duration(time.Duration(days) * day), nil
		}
	}
	d, err := time.ParseDuration(t)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q (write e.g. \"30s\", \"5m\", \"1h30m\" or \"5d\")", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("duration %q must not be negative", s)
	}
	total := time.Duration(days) * day
	if d > math.MaxInt64-total {
		return 0, fmt.Errorf("duration %q is too long", s)
	}
	return Duration(total + d), nil
}

// String spells the duration the way ParseDuration reads it: "5d", "1h30m",
// "90s"; sub-second values use Go's own spelling ("1.5s").
func (d Duration) String() string {
	v := time.Duration(d)
	if v <= 0 || v%time.Second != 0 {
		return v.String()
	}
	var b strings.Builder
	for _, u := range []struct {
		unit time.Duration
		name string
	}{{day, "d"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if n := v / u.unit; n > 0 {
			b.WriteString(strconv.FormatInt(int64(n), 10))
			b.WriteString(u.name)
			v -= n * u.unit
		}
	}
	return b.String()
}

// UnmarshalText implements encoding.TextUnmarshaler, so go-toml reports a bad
// duration with its line.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// MarshalText implements encoding.TextMarshaler ("5m").
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }
