package rating

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Share returns a snapshot with the same prices as next in which every
// entry that states exactly what prev's entry of the same key states is
// prev's entry itself, with its compiled tables. A price list changes a
// few dozen of its thousands of entries between versions, so a book that
// keeps every version (it must: late events are rated at the version of
// their time) holds each unchanged entry once instead of once per version.
// Rating is unaffected: a shared entry is identical by construction.
// shared counts the entries taken from prev. prev and next are unchanged.
func Share(prev, next *Snapshot) (s *Snapshot, shared int, err error) {
	if prev == nil {
		return next, 0, nil
	}
	prices := make([]*ModelPrice, len(next.Prices))
	for i, mp := range next.Prices {
		prices[i] = mp
		old := prev.exact[mp.Key]
		if old == nil || old == mp {
			continue
		}
		same, err := sameEntry(old, mp)
		if err != nil {
			return nil, 0, err
		}
		if same {
			prices[i] = old
			shared++
		}
	}
	s, err = NewSnapshot(next.Source, prices)
	if err != nil {
		return nil, 0, err
	}
	s.Rejected = next.Rejected
	return s, shared, nil
}

// sameEntry compares two entries by their stored form, which spells out
// everything rating reads (key, provider, mode, rates, rules, unpriced).
func sameEntry(a, b *ModelPrice) (bool, error) {
	ja, err := json.Marshal(a)
	if err != nil {
		return false, fmt.Errorf("compare price entry %s: %w", a.Key, err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		return false, fmt.Errorf("compare price entry %s: %w", b.Key, err)
	}
	return bytes.Equal(ja, jb), nil
}
