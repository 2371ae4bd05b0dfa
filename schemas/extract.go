package schemas

import (
	"strings"
	"sync"
	"time"
)

// pathSet extracts a fixed set of dotted paths from a JSON object in one pass,
// without reflection or maps of interface{}. Every node of the path trie gets
// a slot, so a caller sees the raw value of "usage" as well as of
// "usage.prompt_tokens" (and can tell an object from a legacy string).
// Objects are descended only where some wanted path continues; everything
// else is skipped (and validated) by the scanner. A key that appears twice
// on a wanted path is refused.
type pathSet struct {
	root  pathNode
	names []string // slot -> dotted path
	// pool holds *[]rawValue of len size(). The slice is a few KB of
	// pointerful memory; allocating it per message kept the GC busy
	// (BenchmarkDecodeLiteLLM: 17% of CPU in GC assists and preemption).
	pool sync.Pool
}

// getVals returns a cleared value slice for extract; putVals returns it.
// Values must not be used after putVals: they alias the message.
func (p *pathSet) getVals() *[]rawValue {
	if v, ok := p.pool.Get().(*[]rawValue); ok {
		return v
	}
	v := make([]rawValue, p.size())
	return &v
}

func (p *pathSet) putVals(v *[]rawValue) {
	clear(*v) // drop references to the message
	p.pool.Put(v)
}

type pathNode struct {
	keys []string
	kids []*pathNode
	slot int
}

// add registers a dotted path and returns its slot. Adding a path twice
// returns the same slot.
func (p *pathSet) add(path string) int {
	n := &p.root
	prefix := ""
	for seg := range strings.SplitSeq(path, ".") {
		prefix = joinPath(prefix, seg)
		i := n.find([]byte(seg))
		if i < 0 {
			n.keys = append(n.keys, seg)
			n.kids = append(n.kids, &pathNode{slot: len(p.names)})
			p.names = append(p.names, prefix)
			i = len(n.keys) - 1
		}
		n = n.kids[i]
	}
	return n.slot
}

func (n *pathNode) find(key []byte) int {
	for i, k := range n.keys {
		if k == string(key) {
			return i
		}
	}
	return -1
}

// size is the length of the value slice extract needs.
func (p *pathSet) size() int { return len(p.names) }

// extract reads one object and records the raw value of every wanted path
// into vals (len p.size()). On error it returns the failing path.
func (p *pathSet) extract(s *scanner, vals []rawValue) (string, error) {
	return p.extractNode(s, &p.root, vals)
}

func (p *pathSet) extractNode(s *scanner, n *pathNode, vals []rawValue) (string, error) {
	more, err := s.objectStart()
	if err != nil {
		return "", err
	}
	for more {
		key, err := s.objectKey()
		if err != nil {
			return "", err
		}
		i := n.find(key)
		if i < 0 {
			if err := s.skipValue(); err != nil {
				return "", err
			}
		} else {
			kid := n.kids[i]
			if vals[kid.slot].isSet() {
				return p.names[kid.slot], s.errf("duplicate key")
			}
			start := s.pos
			if len(kid.keys) > 0 && s.peek() == '{' {
				s.ws()
				start = s.pos
				if f, err := p.extractNode(s, kid, vals); err != nil {
					return f, err
				}
				vals[kid.slot] = rawValue{kind: kindObject, raw: s.data[start:s.pos]}
			} else {
				v, err := s.readValue()
				if err != nil {
					return p.names[kid.slot], err
				}
				vals[kid.slot] = v
			}
		}
		if more, err = s.objectNext(); err != nil {
			return "", err
		}
	}
	return "", nil
}

// Interpreting raw values. Each returns a reason ("" when fine) for the
// caller's DecodeError.

// present reports whether a value was given and is not null.
func (v rawValue) present() bool { return v.kind != 0 && v.kind != kindNull }

// text returns a string value, decoded. Numbers are accepted as their text
// when allowNumber is set (ids that a sender wrote as numbers).
func (v rawValue) text(allowNumber bool) (string, string) {
	switch v.kind {
	case 0, kindNull:
		return "", ""
	case kindString:
		if v.esc {
			return string(appendUnescaped(nil, v.raw)), ""
		}
		return string(v.raw), ""
	case kindNumber:
		if allowNumber {
			return string(v.raw), ""
		}
	}
	return "", "expected a string, got " + kindName(v.kind)
}

// count returns a non-negative integer count. allowString accepts counts
// written as strings ("450"), as LiteLLM's legacy payload and OTLP's
// intValue do.
func (v rawValue) count(allowString bool) (int64, string) {
	switch v.kind {
	case 0, kindNull:
		return 0, ""
	case kindNumber:
		return parseCount(v.raw)
	case kindString:
		if allowString && !v.esc {
			if string(v.raw) == "None" || string(v.raw) == "" {
				return 0, ""
			}
			return parseCount(v.raw)
		}
	}
	return 0, "expected a non-negative integer count, got " + kindName(v.kind)
}

// cost returns a decimal amount from a number or a decimal string.
func (v rawValue) costText() ([]byte, string) {
	switch v.kind {
	case 0, kindNull:
		return nil, ""
	case kindNumber:
		return v.raw, ""
	case kindString:
		if string(v.raw) == "None" || len(v.raw) == 0 {
			return nil, ""
		}
		if !v.esc && validNumber(v.raw) {
			return v.raw, ""
		}
		return nil, "expected a decimal amount, got " + quoteText(v.raw)
	}
	return nil, "expected a decimal amount, got " + kindName(v.kind)
}

// epochOrTimestamp parses a time given as epoch seconds (number or numeric
// string, scale 0) or as an RFC 3339 / Python str(datetime) string.
func (v rawValue) epochOrTimestamp(scale int, unit string, naive *time.Location) (time.Time, string) {
	switch v.kind {
	case kindNumber:
		return parseEpoch(v.raw, scale, unit)
	case kindString:
		raw := v.raw
		if v.esc {
			raw = appendUnescaped(nil, raw)
		}
		if validNumber(raw) {
			return parseEpoch(raw, scale, unit)
		}
		return parseTimestamp(raw, naive)
	case 0, kindNull:
		return time.Time{}, "missing event time"
	}
	return time.Time{}, "expected epoch " + unit + " or a timestamp, got " + kindName(v.kind)
}
