package config

import (
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// keyIndex records where each key of a document is and what kind of value it
// holds, for the checks made after decoding (go-toml only locates its own
// errors). It also lists the top-level expressions by line, so that a
// rejected key can be blanked out and decoding resumed to find the next
// problem.
type keyIndex struct {
	keys   map[string]*keyInfo // dotted path → first definition
	tables map[string]int      // dotted table name → line of its header
	exprs  []expression        // top-level expressions in file order
}

type keyInfo struct {
	line  int
	kind  unstable.Kind
	elems []elemInfo // for arrays
}

type elemInfo struct {
	line int
	kind unstable.Kind
}

// expression is one top-level expression: a [table] header or a key-value,
// spanning lines first..last.
type expression struct {
	table       bool
	first, last int
}

// buildIndex indexes data as far as it parses; err is the first syntax
// error, if any (the index then covers the expressions before it).
func buildIndex(data []byte) (*keyIndex, error) {
	idx := &keyIndex{keys: map[string]*keyInfo{}, tables: map[string]int{}}
	var p unstable.Parser
	p.Reset(data)
	var prefix []string
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			it := e.Key()
			parts, line := keyParts(&p, &it)
			prefix = parts
			name := strings.Join(parts, ".")
			if _, dup := idx.tables[name]; !dup {
				idx.tables[name] = line
			}
			idx.exprs = append(idx.exprs, expression{table: true, first: line, last: line})
		case unstable.KeyValue:
			sh := p.Shape(e.Raw)
			idx.exprs = append(idx.exprs, expression{first: sh.Start.Line, last: sh.End.Line})
			idx.addKeyValue(&p, prefix, e)
		}
	}
	return idx, p.Error()
}

// keyParts returns the parts of a (possibly dotted) key and the line it is on.
func keyParts(p *unstable.Parser, it *unstable.Iterator) ([]string, int) {
	var parts []string
	line := 0
	for it.Next() {
		n := it.Node()
		if line == 0 {
			line = p.Shape(n.Raw).Start.Line
		}
		parts = append(parts, string(n.Data))
	}
	return parts, line
}

func (idx *keyIndex) addKeyValue(p *unstable.Parser, prefix []string, kv *unstable.Node) {
	it := kv.Key()
	parts, line := keyParts(p, &it)
	path := append(append([]string(nil), prefix...), parts...)
	v := kv.Value()
	info := &keyInfo{line: line, kind: v.Kind}
	switch v.Kind {
	case unstable.Array:
		ch := v.Children()
		for ch.Next() {
			n := ch.Node()
			if n.Kind == unstable.Comment {
				continue
			}
			el := elemInfo{line: line, kind: n.Kind}
			if n.Raw.Length > 0 {
				el.line = p.Shape(n.Raw).Start.Line
			}
			info.elems = append(info.elems, el)
		}
	case unstable.InlineTable:
		ch := v.Children()
		for ch.Next() {
			if n := ch.Node(); n.Kind == unstable.KeyValue {
				idx.addKeyValue(p, path, n)
			}
		}
	}
	name := strings.Join(path, ".")
	if _, dup := idx.keys[name]; !dup {
		idx.keys[name] = info
	}
}

// line returns the line of key, or of its table, or 0.
func (idx *keyIndex) line(key string) int {
	if idx == nil {
		return 0
	}
	if k, ok := idx.keys[key]; ok {
		return k.line
	}
	if i := strings.LastIndexByte(key, '.'); i > 0 {
		return idx.tables[key[:i]]
	}
	return 0
}

// elemLine returns the line of element i of the array at key.
func (idx *keyIndex) elemLine(key string, i int) int {
	if idx != nil {
		if k, ok := idx.keys[key]; ok && i < len(k.elems) {
			return k.elems[i].line
		}
	}
	return idx.line(key)
}

// blank replaces the expression on line (and, for a table header, the
// key-values of that table) by spaces in doc, keeping every line break so
// that later errors keep their line numbers. It reports whether line belonged
// to an expression not blanked before.
func (idx *keyIndex) blank(doc []byte, line int) bool {
	for i, e := range idx.exprs {
		if line < e.first || line > e.last || e.first == 0 {
			continue
		}
		last := e.last
		if e.table {
			for _, next := range idx.exprs[i+1:] {
				if next.table {
					break
				}
				last = next.last
			}
		}
		blankLines(doc, e.first, last)
		idx.exprs[i].first = 0 // not twice
		return true
	}
	return false
}

// blankLines overwrites lines first..last (1-based) of doc with spaces.
func blankLines(doc []byte, first, last int) {
	line := 1
	for i, c := range doc {
		if c == '\n' {
			line++
			continue
		}
		if line > last {
			return
		}
		if line >= first {
			doc[i] = ' '
		}
	}
}
