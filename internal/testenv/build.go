package testenv

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

const modulePath = "github.com/postyard-mail/postyard"

// binary is the postyard binary built for this test process.
var binary struct {
	once sync.Once
	path string
	err  error
}

// Binary returns the path of the postyard binary built from the module's
// current sources, building it on first use (once per test process). Builds
// are cached under os.TempDir()/postyard-testbin/HASH, keyed by a hash of
// every non-test source file, so the packages of one `go test ./...` run and
// later runs on unchanged sources share one binary.
func Binary(t testing.TB) string {
	t.Helper()
	binary.once.Do(func() { binary.path, binary.err = build() })
	if binary.err != nil {
		t.Fatalf("testenv: building postyard: %v", binary.err)
	}
	return binary.path
}

func build() (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	sum, err := sourceHash(root)
	if err != nil {
		return "", err
	}
	cache := filepath.Join(os.TempDir(), "postyard-testbin")
	dir := filepath.Join(cache, sum)
	bin := filepath.Join(dir, "postyard")
	if fi, err := os.Stat(bin); err == nil && fi.Mode().IsRegular() {
		now := time.Now()
		_ = os.Chtimes(dir, now, now) // in use: keep it from pruneCache
		return bin, nil
	}
	pruneCache(cache, sum)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	// The test processes of one `go test ./...` start together: let one
	// build while the others wait for its binary (CPU is scarce in CI).
	unlock, err := lockFile(filepath.Join(dir, "build.lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if fi, err := os.Stat(bin); err == nil && fi.Mode().IsRegular() {
		return bin, nil
	}
	tmp, err := os.CreateTemp(dir, "postyard.build*")
	if err != nil {
		return "", err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	cmd := exec.Command(goTool(), "build", "-o", tmp.Name(), ".")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	if err := os.Rename(tmp.Name(), bin); err != nil {
		return "", err
	}
	return bin, nil
}

// cacheUnused is how long a cached binary nobody asked for is kept.
const cacheUnused = 2 * time.Hour

// pruneCache removes cached builds other than keep that no test process
// used for cacheUnused, so edits during a long session do not fill /tmp.
func pruneCache(cache, keep string) {
	entries, _ := os.ReadDir(cache)
	for _, e := range entries {
		if !e.IsDir() || e.Name() == keep {
			continue
		}
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > cacheUnused {
			_ = os.RemoveAll(filepath.Join(cache, e.Name()))
		}
	}
}

// goTool is the go command: from PATH, else the usual install location.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}

// moduleRoot walks up from the working directory (a package directory under
// `go test`) to the go.mod of the postyard module.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if f, err := os.Open(filepath.Join(dir, "go.mod")); err == nil {
			line, _ := bufio.NewReader(f).ReadString('\n')
			f.Close()
			if strings.TrimSpace(line) == "module "+modulePath {
				return dir, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("testenv: not inside the " + modulePath + " module")
		}
		dir = parent
	}
}

// sourceHash hashes the names and contents of the files the binary is built
// from: everything but tests, testdata, hidden directories and the build and
// data directories of `make`.
func sourceHash(root string) (string, error) {
	var files []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (strings.HasPrefix(name, ".") || name == "testdata" || path == filepath.Join(root, "bin") || path == filepath.Join(root, "data")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || strings.HasSuffix(name, "_test.go") || strings.HasPrefix(name, ".") {
			return nil
		}
		files = append(files, path)
		return nil
	})
	if err != nil {
		return "", err
	}
	sort.Strings(files)
	h := sha256.New()
	fmt.Fprintf(h, "%s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	for _, p := range files {
		rel, _ := filepath.Rel(root, p)
		f, err := os.Open(p)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s\x00", rel)
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return "", err
		}
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:20], nil
}
