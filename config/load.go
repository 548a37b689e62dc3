package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"

	toml "github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// maxFileSize bounds the config file; a real one is a few kilobytes.
const maxFileSize = 1 << 20

// maxErrors stops collecting after this many problems.
const maxErrors = 50

// Load reads, decodes and validates the TOML file at path. Keys the file
// does not set keep their Default values. On failure the error is an Errors
// listing every problem as "FILE:LINE: key: problem", except when the file
// cannot be read at all.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("config: %s is a directory", path)
	}
	// Not only regular files: "/dev/stdin" is useful with "config check".
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("config: %s is larger than %d bytes", path, maxFileSize)
	}
	return Parse(path, data)
}

// Parse is Load for a document already in memory; name is used in messages.
func Parse(name string, data []byte) (*Config, error) {
	idx, syntaxErr := buildIndex(data)
	doc := bytes.Clone(data)
	// Values go-toml would take but should not (see kindChecks) are
	// reported and blanked before decoding.
	errs := kindChecks(name, idx, doc)
	kindErrs := len(errs)
	var cfg *Config
	// go-toml stops at the first bad key. To report them all, each bad key
	// is blanked out (keeping line numbers) and the document decoded again;
	// every round blanks one more expression, so this ends.
	for cfg == nil && len(errs) < maxErrors {
		c := Default()
		err := toml.NewDecoder(bytes.NewReader(doc)).DisallowUnknownFields().Decode(c)
		if err == nil {
			cfg = c
			break
		}
		var strict *toml.StrictMissingError
		var de *toml.DecodeError
		progress := false
		switch {
		case errors.As(err, &strict):
			for i := range strict.Errors {
				e := &strict.Errors[i]
				errs = append(errs, decodeError(name, e))
				row, _ := e.Position()
				if idx.blank(doc, row) {
					progress = true
				}
			}
		case errors.As(err, &de):
			errs = append(errs, decodeError(name, de))
			row, _ := de.Position()
			progress = idx.blank(doc, row)
		default:
			errs = append(errs, &Error{File: name, Problem: err.Error()})
		}
		if !progress {
			break
		}
	}
	if cfg != nil {
		if syntaxErr != nil && len(errs) == kindErrs { // go-toml accepted what its own parser refused
			errs = append(errs, &Error{File: name, Problem: syntaxErr.Error()})
		}
		errs = append(errs, cfg.validate(name, idx)...)
	}
	if len(errs) > 0 {
		sortErrors(errs)
		return nil, errs
	}
	return cfg, nil
}

// sortErrors puts errors in file order; those without a line go last.
func sortErrors(errs Errors) {
	sort.SliceStable(errs, func(i, j int) bool {
		li, lj := errs[i].Line, errs[j].Line
		if li == 0 || lj == 0 {
			return li != 0 && lj == 0
		}
		return li < lj
	})
}

var (
	mismatchRE = regexp.MustCompile(`^cannot decode TOML (\S+(?: table)?) into`)
	goFieldRE  = regexp.MustCompile(`into struct field \S*?(\w+) of type`)
)

// decodeError turns a go-toml error into an *Error with a message that
// speaks of TOML keys, not Go types.
func decodeError(file string, de *toml.DecodeError) *Error {
	row, _ := de.Position()
	path := []string(de.Key())
	msg := strings.TrimPrefix(de.Error(), "toml: ")
	switch {
	case msg == "unknown field":
		msg = "unknown key"
		if s := suggest(path); s != "" {
			msg += fmt.Sprintf(" (did you mean %s?)", s)
		}
	case msg == "missing table":
		msg = "unknown table"
		if s := suggest(path); s != "" {
			msg += fmt.Sprintf(" (did you mean [%s]?)", s)
		}
	case strings.HasSuffix(msg, "is already defined"):
		msg = "duplicate key"
	case strings.HasSuffix(msg, "already exists"):
		msg = "table defined twice"
	case len(path) == 0:
		msg = "syntax error: " + msg
	default:
		m := mismatchRE.FindStringSubmatch(msg)
		if m == nil {
			break
		}
		got := m[1]
		t := fieldType(path)
		// In an inline table go-toml names the table, not the key in it;
		// the Go field in its message says which key that is.
		if f := goFieldRE.FindStringSubmatch(msg); f != nil && t != nil && t.Kind() == reflect.Struct && !strings.HasSuffix(got, "table") {
			if sf, ok := t.FieldByName(f[1]); ok {
				path = append(append([]string(nil), path...), tagName(sf))
				t = sf.Type
			}
		}
		if t != nil {
			msg = fmt.Sprintf("expected %s, not %s", describe(t), article(got))
		} else {
			msg = "wrong type: " + article(got)
		}
	}
	return &Error{File: file, Line: row, Key: strings.Join(path, "."), Problem: msg}
}

func article(s string) string {
	if s != "" && strings.ContainsRune("aeiou", rune(s[0])) {
		return "an " + s
	}
	return "a " + s
}

var (
	sizeType     = reflect.TypeFor[Size]()
	durationType = reflect.TypeFor[Duration]()
)

// describe names what a key of Go type t takes, in TOML terms.
func describe(t reflect.Type) string {
	switch t {
	case sizeType:
		return `a size such as "25MB", "512KiB" or a number of bytes`
	case durationType:
		return `a duration string such as "30s", "5m" or "5d"`
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int64:
		return "an integer"
	case reflect.Bool:
		return "true or false"
	case reflect.Struct:
		return "a table"
	case reflect.Slice:
		if t.Elem() == durationType {
			return `an array of duration strings such as ["5m", "1h"]`
		}
		return "an array of " + strings.TrimPrefix(strings.TrimPrefix(describe(t.Elem()), "a "), "an ") + "s"
	}
	return t.String()
}

// fieldType returns the Go type of the Config field at a TOML key path.
func fieldType(path []string) reflect.Type {
	t := reflect.TypeFor[Config]()
	for _, part := range path {
		if t.Kind() != reflect.Struct {
			return nil
		}
		f, ok := fieldByTag(t, part)
		if !ok {
			return nil
		}
		t = f.Type
	}
	return t
}

func fieldByTag(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		if f := t.Field(i); tagName(f) == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func tagName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	return name
}

// suggest proposes the known key closest to a misspelt one, or "".
func suggest(path []string) string {
	if len(path) == 0 {
		return ""
	}
	parent := fieldType(path[:len(path)-1])
	if parent == nil || parent.Kind() != reflect.Struct {
		return ""
	}
	bad := path[len(path)-1]
	// At most one edit in three letters: "max_recipent" → "max_recipients", not "foo" → "log".
	best, bestDist := "", max(1, len(bad)/3)+1
	for i := range parent.NumField() {
		name := tagName(parent.Field(i))
		if d := editDistance(bad, name); d < bestDist {
			best, bestDist = name, d
		}
	}
	if best == "" {
		return ""
	}
	return strings.Join(append(append([]string(nil), path[:len(path)-1]...), best), ".")
}

// editDistance is the optimal-string-alignment distance of a and b:
// insertions, deletions, substitutions and swaps of neighbours cost 1.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// kindChecks finds values go-toml accepts but Postyard does not, reports
// them and blanks them out of doc: a bare number where a duration belongs
// (go-toml would read 300 as 300ns), and anything but a string or an integer
// where a size belongs (go-toml hands a float's text to UnmarshalText and
// drops the line of its error).
func kindChecks(file string, idx *keyIndex, doc []byte) Errors {
	var errs Errors
	bad := func(line int, key, format string, args ...any) {
		errs = append(errs, &Error{File: file, Line: line, Key: key, Problem: fmt.Sprintf(format, args...)})
		idx.blank(doc, line)
	}
	for key, info := range idx.keys {
		t := fieldType(strings.Split(key, "."))
		got := article(strings.ToLower(info.kind.String()))
		switch {
		case t == durationType && info.kind != unstable.String:
			bad(info.line, key, "expected %s, not %s (a bare number has no unit)", describe(t), got)
		case t == sizeType && info.kind != unstable.String && info.kind != unstable.Integer:
			bad(info.line, key, "expected %s, not %s", describe(t), got)
		case t != nil && t.Kind() == reflect.Slice && t.Elem() == durationType:
			for _, el := range info.elems {
				if el.kind != unstable.String {
					bad(el.line, key, "expected %s, not %s in the array", describe(t), article(strings.ToLower(el.kind.String())))
					break
				}
			}
		}
	}
	return errs
}
