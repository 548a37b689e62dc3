package accounts

import (
	"strings"
	"testing"
)

// The test vectors of Drepper's specification ("Unix crypt using SHA-256 and
// SHA-512"), identical to what `openssl passwd -5/-6 -salt` prints.
func TestSHACryptSpecVectors(t *testing.T) {
	tests := []struct {
		setting, password, want string
	}{
		{"$5$saltstring", "Hello world!", "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5"},
		{"$5$rounds=10000$saltstringsaltstring", "Hello world!", "$5$rounds=10000$saltstringsaltst$3xv.VbSHBb41AL9AvLeujZkZRBAwqFMz2.opqey6IcA"},
		{"$5$rounds=5000$toolongsaltstring", "This is just a test", "$5$rounds=5000$toolongsaltstrin$Un/5jzAHMgOGZ5.mWJpuVolil07guHPvOW8mGRcvxa5"},
		{"$5$rounds=1400$anotherlongsaltstring", "a very much longer text to encrypt.  This one even stretches over morethan one line.", "$5$rounds=1400$anotherlongsalts$Rx.j8H.h8HjEDGomFU8bDkXm3XIUnzyxf12oP84Bnq1"},
		{"$5$rounds=77777$short", "we have a short salt string but not a short password", "$5$rounds=77777$short$JiO1O3ZpDAxGJeaDIuqCoEFysAe1mZNJRs3pw0KQRd/"},
		{"$5$rounds=123456$asaltof16chars..", "a short string", "$5$rounds=123456$asaltof16chars..$gP3VQ/6X7UUEW3HkBn2w1/Ptq2jxPyzV/cZKmF/wJvD"},
		{"$5$rounds=10$roundstoolow", "the minimum number is still observed", "$5$rounds=1000$roundstoolow$yfvwcWrQ8l/K0DAWyuPMDNHpIVlTQebY9l/gL972bIC"},
		{"$6$saltstring", "Hello world!", "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"},
		{"$6$rounds=10000$saltstringsaltstring", "Hello world!", "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v."},
		{"$6$rounds=5000$toolongsaltstring", "This is just a test", "$6$rounds=5000$toolongsaltstrin$lQ8jolhgVRVhY4b5pZKaysCLi0QBxGoNeKQzQ3glMhwllF7oGDZxUhx1yxdYcz/e1JSbq3y6JMxxl8audkUEm0"},
		{"$6$rounds=1400$anotherlongsaltstring", "a very much longer text to encrypt.  This one even stretches over morethan one line.", "$6$rounds=1400$anotherlongsalts$POfYwTEok97VWcjxIiSOjiykti.o/pQs.wPvMxQ6Fm7I6IoYN3CmLs66x9t0oSwbtEW7o7UmJEiDwGqd8p4ur1"},
		{"$6$rounds=77777$short", "we have a short salt string but not a short password", "$6$rounds=77777$short$WuQyW2YR.hBNpjjRhpYD/ifIw05xdfeEyQoMxIXbkvr0gge1a1x3yRULJ5CCaUeOxFmtlcGZelFl5CxtgfiAc0"},
		{"$6$rounds=123456$asaltof16chars..", "a short string", "$6$rounds=123456$asaltof16chars..$BtCwjqMJGx5hrJhZywWvt0RLE8uZ4oPwcelCjmw2kSYu.Ec6ycULevoBK25fs2xXgMNrCzIMVcgEJAstJeonj1"},
		{"$6$rounds=10$roundstoolow", "the minimum number is still observed", "$6$rounds=1000$roundstoolow$kUMsbe306n21p9R.FRkW3IGn.S9NPN0x50YhH1xhLsPuWGsUSklZt58jaTfF4ZEQpyUNGc0dqbpBYYBaHHrsX."},
	}
	for _, tt := range tests {
		t.Run(tt.setting, func(t *testing.T) {
			v := sha512Crypt
			if tt.setting[1] == '5' {
				v = sha256Crypt
			}
			p, err := v.parse(tt.setting)
			if err != nil {
				t.Fatal(err)
			}
			if got := v.crypt([]byte(tt.password), p); got != tt.want {
				t.Errorf("crypt = %s\nwant    %s", got, tt.want)
			}
			if p.rounds > shaCryptDefaultRounds {
				return // verifying costs the same rounds again; the cheap cases cover VerifyHash
			}
			scheme := "{SHA512-CRYPT}"
			if v == sha256Crypt {
				scheme = "{SHA256-CRYPT}"
			}
			for _, stored := range []string{scheme + tt.want, tt.want} {
				if ok, err := VerifyHash(stored, tt.password); !ok || err != nil {
					t.Errorf("VerifyHash(%s) = %v, %v; want true", stored, ok, err)
				}
				if ok, err := VerifyHash(stored, tt.password+"x"); ok || err != nil {
					t.Errorf("VerifyHash(%s, wrong) = %v, %v; want false", stored, ok, err)
				}
			}
		})
	}
}

func TestHashRoundTrip(t *testing.T) {
	for _, scheme := range []string{SchemeArgon2ID, SchemeArgon2I, SchemeBlfCrypt, SchemeSHA512Crypt, SchemeSHA256Crypt, SchemePlain, SchemeClear, "argon2id"} {
		h, err := hashPassword(scheme, "pässwörd", 4)
		if err != nil {
			t.Fatalf("%s: %v", scheme, err)
		}
		if HashScheme(h) != strings.ToUpper(scheme) {
			t.Errorf("HashScheme(%s) = %q", h, HashScheme(h))
		}
		for pw, want := range map[string]bool{"pässwörd": true, "pässwörD": false, "": false, "pässwörd ": false} {
			if ok, err := VerifyHash(h, pw); ok != want || err != nil {
				t.Errorf("VerifyHash(%s, %q) = %v, %v; want %v", h, pw, ok, err, want)
			}
		}
	}
	for _, tt := range []struct{ scheme, pw string }{
		{SchemeArgon2ID, ""},
		{SchemeArgon2ID, strings.Repeat("x", MaxPasswordLen+1)},
		{SchemeBlfCrypt, strings.Repeat("x", 73)},
		{SchemePlain, "a:b"},
		{SchemePlain, "a\nb"},
		{"MD5-CRYPT", "pw"},
	} {
		if h, err := HashPassword(tt.scheme, tt.pw); err == nil {
			t.Errorf("HashPassword(%s, %q) = %q, want an error", tt.scheme, tt.pw, h)
		}
	}
	for _, stored := range []string{
		"{MD5-CRYPT}$1$salt$hash", "{SHA1}x", "$1$salt$hash", "plain", "{PLAIN", "{ARGON2ID}$argon2id$v=16$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",
		"{ARGON2ID}$argon2i$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g", "{ARGON2ID}$argon2id$v=19$m=4194304,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",
		"{ARGON2ID}$argon2id$v=19$m=8,t=1$c2FsdHNhbHQ$aGFzaGhhc2g", "{ARGON2ID}$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaGhhc2g",
		"{SHA512-CRYPT}$6$salt$short", "{SHA256-CRYPT}$6$salt$" + strings.Repeat("a", 86), "{BLF-CRYPT}$2y$99$abc",
	} {
		if ok, err := VerifyHash(stored, "pw"); ok || err == nil {
			t.Errorf("VerifyHash(%q) = %v, %v; want an error", stored, ok, err)
		}
	}
}
