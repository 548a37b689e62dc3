package maildir

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// dovecot-keywords maps the letters a–z of file names to keyword names, one
// "INDEX NAME" line each ("0 $Junk" is letter 'a'). Dovecot rewrites it by
// writing dovecot-keywords.lock (created exclusively) and renaming it over the
// file; Postyard does the same, so the two never lose each other's keywords.

const maxKeywords = 26

type keywordTable [maxKeywords]string

func parseKeywords(data []byte) keywordTable {
	var kw keywordTable
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		idx, name, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(idx)
		if err != nil || n < 0 || n >= maxKeywords || !validKeyword(name) {
			continue
		}
		kw[n] = name
	}
	return kw
}

func (kw *keywordTable) format() []byte {
	var b bytes.Buffer
	for i, name := range kw {
		if name != "" {
			fmt.Fprintf(&b, "%d %s\n", i, name)
		}
	}
	return b.Bytes()
}

// lookup finds name case-insensitively (IMAP keywords are case-insensitive).
func (kw *keywordTable) lookup(name string) int {
	for i, k := range kw {
		if k != "" && strings.EqualFold(k, name) {
			return i
		}
	}
	return -1
}

func readKeywordFile(dir string) (keywordTable, fileID, error) {
	path := filepath.Join(dir, keywordsName)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return keywordTable{}, fileID{}, nil
	}
	if err != nil {
		return keywordTable{}, fileID{}, fmt.Errorf("maildir: read keywords: %w", err)
	}
	defer f.Close()
	id, err := fileIDOf(f)
	if err != nil {
		return keywordTable{}, fileID{}, err
	}
	var b bytes.Buffer
	if _, err := b.ReadFrom(f); err != nil {
		return keywordTable{}, fileID{}, fmt.Errorf("maildir: read keywords: %w", err)
	}
	return parseKeywords(b.Bytes()), id, nil
}

// addKeywords gives each name a letter, rewriting dovecot-keywords under its
// lock when a name is new. It returns the table now on disk.
func addKeywords(dir string, names []string, host string, pid int) (keywordTable, fileID, error) {
	lock, err := acquireDotlock(dir, keywordsName+".lock", host, pid)
	if err != nil {
		return keywordTable{}, fileID{}, err
	}
	defer lock.release()
	kw, id, err := readKeywordFile(dir) // the current file, read under the lock
	if err != nil {
		return kw, id, err
	}
	changed := false
	for _, n := range names {
		if kw.lookup(n) >= 0 {
			continue
		}
		free := -1
		for i := range kw {
			if kw[i] == "" {
				free = i
				break
			}
		}
		if free < 0 {
			return kw, id, fmt.Errorf("%w: %q", ErrTooManyKeywords, n)
		}
		kw[free] = n
		changed = true
	}
	if !changed {
		return kw, id, nil
	}
	if err := lock.replace(filepath.Join(dir, keywordsName), kw.format(), false); err != nil {
		return kw, id, err
	}
	_, id, err = readKeywordFile(dir)
	return kw, id, err
}
