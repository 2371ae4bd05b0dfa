package bridge

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// Splitting a request body into records.
//
// A partner body is one JSON object, a JSON array of objects, or NDJSON
// (objects separated by whitespace, normally one per line): the same three
// shapes every schemas decoder accepts. Each record becomes one Kafka
// message whose value is the record's bytes exactly as the partner sent
// them (a sub-slice of the body, never re-encoded), so that a dead-letter
// record or an audit shows what the partner really sent.
//
// The splitter only finds record boundaries; it does not validate what is
// inside a record (the decoder does that, strictly, right after). It does
// check the structure between records, so a body it accepts is a sequence
// of well-delimited objects and nothing else.

// splitError says where a body is malformed.
type splitError struct {
	record int    // 0-based record the problem is in or after
	offset int    // byte offset in the body
	reason string // what was wrong and what was expected
}

func (e *splitError) Error() string {
	return "record " + strconv.Itoa(e.record) + ": " + e.reason + " at offset " + strconv.Itoa(e.offset)
}

// maxDepth bounds JSON nesting, so that a hostile body cannot make the
// splitter's bracket stack grow without limit.
const maxDepth = 512

func isWS(c byte) bool { return c == ' ' || c == '\n' || c == '\r' || c == '\t' }

func skipWS(b []byte, i int) int {
	for i < len(b) && isWS(b[i]) {
		i++
	}
	return i
}

func found(b []byte, i int) string {
	if i >= len(b) {
		return "end of input"
	}
	return strconv.QuoteRune(rune(b[i]))
}

// splitRecords appends the records of body to dst. An empty array yields no
// records; an empty body is an error.
func splitRecords(dst [][]byte, body []byte) ([][]byte, error) {
	i := skipWS(body, 0)
	if i == len(body) {
		return dst, &splitError{0, i, "empty body: expected a JSON object, an array of objects, or NDJSON"}
	}
	switch body[i] {
	case '[':
		i = skipWS(body, i+1)
		if i < len(body) && body[i] == ']' {
			if i = skipWS(body, i+1); i != len(body) {
				return dst, &splitError{0, i, "unexpected " + found(body, i) + " after the array: expected end of input"}
			}
			return dst, nil
		}
		for idx := 0; ; idx++ {
			if i >= len(body) || body[i] != '{' {
				return dst, &splitError{idx, i, "expected an object, found " + found(body, i)}
			}
			end, err := objectEnd(body, i)
			if err != nil {
				err.record = idx
				return dst, err
			}
			dst = append(dst, body[i:end])
			i = skipWS(body, end)
			switch {
			case i < len(body) && body[i] == ',':
				i = skipWS(body, i+1)
			case i < len(body) && body[i] == ']':
				if i = skipWS(body, i+1); i != len(body) {
					return dst, &splitError{idx, i, "unexpected " + found(body, i) + " after the array: expected end of input"}
				}
				return dst, nil
			default:
				return dst, &splitError{idx, i, "expected ',' or ']' after the record, found " + found(body, i)}
			}
		}
	case '{':
		for idx := 0; i < len(body); idx++ {
			if body[i] != '{' {
				return dst, &splitError{idx, i, "expected an object (NDJSON: one object per line), found " + found(body, i)}
			}
			end, err := objectEnd(body, i)
			if err != nil {
				err.record = idx
				return dst, err
			}
			dst = append(dst, body[i:end])
			i = skipWS(body, end)
		}
		return dst, nil
	}
	return dst, &splitError{0, i, "expected a JSON object, an array of objects, or NDJSON, found " + found(body, i)}
}

// objectEnd returns the offset just after the object starting at b[start]
// ('{'), matching brackets outside strings.
func objectEnd(b []byte, start int) (int, *splitError) {
	var stackBuf [32]byte
	stack := stackBuf[:0]
	for i := start; i < len(b); i++ {
		switch c := b[i]; c {
		case '"':
			// Skip the string: its closing quote is the first one preceded
			// by an even number of backslashes. IndexByte is vectorized;
			// this loop is most of the splitter's time.
			j := i + 1
			for {
				k := bytes.IndexByte(b[j:], '"')
				if k < 0 {
					return 0, &splitError{offset: i, reason: "unterminated string"}
				}
				j += k
				n := 0
				for p := j - 1; p > i && b[p] == '\\'; p-- {
					n++
				}
				if n%2 == 0 {
					break
				}
				j++
			}
			i = j
		case '{', '[':
			if len(stack) == maxDepth {
				return 0, &splitError{offset: i, reason: "nesting deeper than " + strconv.Itoa(maxDepth)}
			}
			stack = append(stack, c+2) // '{'+2 == '}', '['+2 == ']'
		case '}', ']':
			if len(stack) == 0 || stack[len(stack)-1] != c {
				return 0, &splitError{offset: i, reason: "unexpected " + strconv.QuoteRune(rune(c))}
			}
			stack = stack[:len(stack)-1]
			if len(stack) == 0 {
				return i + 1, nil
			}
		}
	}
	return 0, &splitError{offset: len(b), reason: "unexpected end of input inside an object"}
}

// OpenRouter Broadcast (OTLP JSON) holds many spans in one document, and
// the spans may belong to different customers. A message's key must be the
// customer of every event in it, so a document whose generation spans
// share one customer is published whole (original bytes, key = that
// customer), and a document that mixes customers is split into one
// document per customer: each keeps the original resource and scope
// objects and the original span objects, byte for byte, re-assembled into
// {"resourceSpans":[{...resource..., "scopeSpans":[{...scope...,
// "spans":[...]}]}]}. Spans that yield no usage event (not a generation:
// no model or token attribute) carry nothing billable and are left out of
// split documents. Splitting changes no idempotency key: a span's key is
// its gen_ai.response.id, or its trace and span ids, wherever it travels.

// otlpPart is one customer's share of an OTLP document.
type otlpPart struct {
	customer string
	value    []byte
	events   int
}

// otlpObject is an OTLP JSON object (the document, a resource entry or a
// scope entry): its members other than the child list, as raw JSON, and the
// child list, whose member name is childKey.
type otlpObject struct {
	fields   map[string]json.RawMessage
	childKey string
	children []*otlpObject     // resource → scopes, document → resources
	spans    []json.RawMessage // scope → spans
}

// appendJSON writes o with its members in sorted order and every raw value
// verbatim (encoding/json would compact them and escape <, > and &).
func (o *otlpObject) appendJSON(b []byte) []byte {
	keys := make([]string, 0, len(o.fields)+1)
	for k := range o.fields {
		keys = append(keys, k)
	}
	keys = append(keys, o.childKey)
	sortStrings(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		kq, _ := json.Marshal(k) // a string always marshals
		b = append(b, kq...)
		b = append(b, ':')
		if k != o.childKey {
			b = append(b, o.fields[k]...)
			continue
		}
		b = append(b, '[')
		if o.spans != nil {
			for j, s := range o.spans {
				if j > 0 {
					b = append(b, ',')
				}
				b = append(b, s...)
			}
		} else {
			for j, c := range o.children {
				if j > 0 {
					b = append(b, ',')
				}
				b = c.appendJSON(b)
			}
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

func sortStrings(s []string) {
	// Tiny lists (a handful of members): insertion sort, no import needed.
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// members parses a JSON object into its members and removes the child list
// named by one of childKeys (the first present), which it returns.
func members(raw []byte, where string, childKeys ...string) (map[string]json.RawMessage, string, []json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, "", nil, fmt.Errorf("%s: %w", where, err)
	}
	key := childKeys[0]
	for _, k := range childKeys {
		if _, ok := m[k]; ok {
			key = k
			break
		}
	}
	var list []json.RawMessage
	if v, ok := m[key]; ok && string(v) != "null" {
		if err := json.Unmarshal(v, &list); err != nil {
			return nil, "", nil, fmt.Errorf("%s.%s: %w", where, key, err)
		}
	}
	delete(m, key)
	return m, key, list, nil
}

// splitOTLP splits an OTLP document by customer. customerOf decodes a
// one-span document and returns the customer of its events and how many
// events it holds (0 for a span that is not a generation). Parts come in
// the order their customers first appear.
func splitOTLP(doc []byte, customerOf func(oneSpan []byte) (string, int, error)) ([]otlpPart, error) {
	topFields, _, resources, err := members(doc, "OTLP document", "resourceSpans")
	if err != nil {
		return nil, err
	}
	// Per customer: the document being assembled, and which source
	// resource and scope its last resource and scope entries copy, so that
	// consecutive spans of one scope share one scope entry.
	type assembly struct {
		customer           string
		doc                otlpObject
		lastRes, lastScope int
		events             int
	}
	var order []*assembly
	byCustomer := map[string]*assembly{}
	var one []byte
	for ri, rraw := range resources {
		resFields, scopeKey, scopes, err := members(rraw, fmt.Sprintf("resourceSpans[%d]", ri), "scopeSpans", "instrumentationLibrarySpans")
		if err != nil {
			return nil, err
		}
		for si, sraw := range scopes {
			scopeFields, _, spans, err := members(sraw, fmt.Sprintf("resourceSpans[%d].%s[%d]", ri, scopeKey, si), "spans")
			if err != nil {
				return nil, err
			}
			for _, span := range spans {
				single := otlpObject{fields: topFields, childKey: "resourceSpans", children: []*otlpObject{{
					fields: resFields, childKey: scopeKey, children: []*otlpObject{{
						fields: scopeFields, childKey: "spans", spans: []json.RawMessage{span},
					}},
				}}}
				one = single.appendJSON(one[:0])
				cust, n, err := customerOf(one)
				if err != nil {
					return nil, err
				}
				if n == 0 {
					continue
				}
				a := byCustomer[cust]
				if a == nil {
					a = &assembly{customer: cust, doc: otlpObject{fields: topFields, childKey: "resourceSpans"}, lastRes: -1}
					byCustomer[cust] = a
					order = append(order, a)
				}
				a.events += n
				if a.lastRes != ri {
					a.doc.children = append(a.doc.children, &otlpObject{fields: resFields, childKey: scopeKey})
					a.lastRes, a.lastScope = ri, -1
				}
				res := a.doc.children[len(a.doc.children)-1]
				if a.lastScope != si {
					res.children = append(res.children, &otlpObject{fields: scopeFields, childKey: "spans", spans: []json.RawMessage{}})
					a.lastScope = si
				}
				scope := res.children[len(res.children)-1]
				scope.spans = append(scope.spans, span)
			}
		}
	}
	parts := make([]otlpPart, 0, len(order))
	for _, a := range order {
		parts = append(parts, otlpPart{customer: a.customer, value: a.doc.appendJSON(nil), events: a.events})
	}
	return parts, nil
}
