package accounts

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// benchDir opens a directory of 1000 users and 200 aliases with hashes of
// the given scheme (only user0's hash is real, to keep the set-up short).
func benchDir(b *testing.B, scheme string) *Directory {
	b.Helper()
	h, err := HashPassword(scheme, "pw")
	if err != nil {
		b.Fatal(err)
	}
	var passwd, aliases strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&passwd, "user%d@example.com:%s\n", i, h)
	}
	for i := range 200 {
		fmt.Fprintf(&aliases, "list%d@example.com: user%d@example.com, user%d@example.com, friend%d@elsewhere.net\n", i, i, i+1, i)
	}
	dir := b.TempDir()
	writeFile(&testing.T{}, dir, passwdName, passwd.String())
	writeFile(&testing.T{}, dir, aliasesName, aliases.String())
	d, err := Open(dir, []string{"example.com"}, nil)
	if err != nil {
		b.Fatal(err)
	}
	return d
}

func BenchmarkResolve(b *testing.B) {
	d := benchDir(b, SchemePlain)
	for _, addr := range []string{"user500@example.com", "User500+tag@Example.COM", "list7@example.com", "nobody@example.com"} {
		b.Run(addr, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				d.Resolve(addr)
			}
		})
	}
}

func BenchmarkResolveParallel(b *testing.B) {
	d := benchDir(b, SchemePlain)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			d.Resolve("list7@example.com")
		}
	})
}

func BenchmarkAuthenticate(b *testing.B) {
	for _, scheme := range []string{SchemePlain, SchemeArgon2ID} {
		d := benchDir(b, scheme)
		b.Run(scheme, func(b *testing.B) {
			for b.Loop() {
				if _, err := d.Authenticate("user0@example.com", "pw"); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(scheme+"/unknown-user", func(b *testing.B) {
			for b.Loop() {
				d.Authenticate("nobody@example.com", "pw")
			}
		})
	}
}

// Lookups run lock-free while files change and reloads happen; run with
// -race.
func TestConcurrentLookupsAndReloads(t *testing.T) {
	d, dir := openDir(t, "alice@example.com:{PLAIN}pw\n", "team@example.com: alice@example.com\n")
	d.pollInterval = 0 // every lookup checks the files
	d.dummy = plainVerifier{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if res, err := d.Resolve("team@example.com"); err != nil || res.Local[0] != "alice@example.com" {
					t.Errorf("Resolve during reloads: %v %v", res, err)
					return
				}
				if _, err := d.Authenticate("alice@example.com", "pw"); err != nil {
					t.Errorf("Authenticate during reloads: %v", err)
					return
				}
				d.CanSendAs("alice@example.com", "team@example.com")
			}
		})
	}
	for i := range 12 {
		addr := fmt.Sprintf("u%d@example.com", i)
		if err := editPasswd(dir, func(l []string) ([]string, error) { return append(l, addr+":{PLAIN}x"), nil }); err != nil {
			t.Fatal(err)
		}
		if err := AddAlias(dir, "x"+addr, []string{addr}, false); err != nil {
			t.Fatal(err)
		}
		if i%4 == 0 {
			if err := d.Reload(); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
	d.lastCheck.Store(0)
	if res, err := d.Resolve("xu11@example.com"); err != nil || res.Local[0] != "u11@example.com" {
		t.Errorf("last edit not seen: %v %v", res, err)
	}
}
