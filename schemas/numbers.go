package schemas

import (
	"math"
	"time"

	"github.com/shopspring/decimal"
)

// Number handling shared by the decoders. Every count and time is parsed from
// the number's text with integer arithmetic, never through float64, so
// 1771718400.123456 is exactly that many microseconds and 10^17 tokens is not
// silently rounded.

// scaledInt returns the JSON number raw times 10^shift, truncated toward zero.
// frac reports whether nonzero digits were dropped by the truncation, neg the
// sign, and ok whether the result fits in an int64. raw must already be a
// valid JSON number (as numberRaw returns, or as checked by validNumber).
func scaledInt(raw []byte, shift int) (v int64, frac, neg, ok bool) {
	i := 0
	if i < len(raw) && raw[i] == '-' {
		neg = true
		i++
	}
	intStart := i
	for i < len(raw) && raw[i] >= '0' && raw[i] <= '9' {
		i++
	}
	intEnd := i
	fracStart, fracEnd := i, i
	if i < len(raw) && raw[i] == '.' {
		i++
		fracStart = i
		for i < len(raw) && raw[i] >= '0' && raw[i] <= '9' {
			i++
		}
		fracEnd = i
	}
	exp := 0
	if i < len(raw) && (raw[i] == 'e' || raw[i] == 'E') {
		i++
		eneg := false
		if i < len(raw) && (raw[i] == '+' || raw[i] == '-') {
			eneg = raw[i] == '-'
			i++
		}
		for ; i < len(raw); i++ {
			// Cap the exponent: anything beyond ±100000 is out of range
			// or truncates to zero either way.
			if exp < 100000 {
				exp = exp*10 + int(raw[i]-'0')
			}
		}
		if eneg {
			exp = -exp
		}
	}
	nInt, nFrac := intEnd-intStart, fracEnd-fracStart
	e := exp + shift - nFrac // value = digits × 10^e
	keep := nInt + nFrac + e // leading digits that sit at or above the units place
	digit := func(k int) byte {
		if k < nInt {
			return raw[intStart+k] - '0'
		}
		return raw[fracStart+k-nInt] - '0'
	}
	ok = true
	for k := 0; k < nInt+nFrac; k++ {
		d := digit(k)
		if k >= keep {
			if d != 0 {
				frac = true
			}
			continue
		}
		if v > (math.MaxInt64-int64(d))/10 {
			ok = false
			return
		}
		v = v*10 + int64(d)
	}
	for ; e > 0 && v != 0; e-- {
		if v > math.MaxInt64/10 {
			ok = false
			return
		}
		v *= 10
	}
	if neg && v != 0 {
		v = -v
	}
	return v, frac, neg && (v != 0 || frac), ok
}

// parseCount parses a token or unit count: a non-negative integer. Integral
// values written with a fraction or exponent ("1200.0", "1.2e3") are accepted;
// anything with a nonzero fractional part is refused, never rounded.
// It returns a reason ("" when fine) for the caller's DecodeError.
func parseCount(raw []byte) (int64, string) {
	// Fast path: plain digits.
	if n := len(raw); n > 0 && n <= 18 {
		var v int64
		plain := true
		for _, c := range raw {
			if c < '0' || c > '9' {
				plain = false
				break
			}
			v = v*10 + int64(c-'0')
		}
		if plain {
			if n > 1 && raw[0] == '0' {
				return 0, "invalid number " + quoteText(raw)
			}
			if v > MaxQuantity {
				return 0, "count " + string(raw) + " out of range (max 10^12)"
			}
			return v, ""
		}
	}
	if !validNumber(raw) {
		return 0, "expected a non-negative integer, got " + quoteText(raw)
	}
	v, frac, neg, ok := scaledInt(raw, 0)
	switch {
	case neg:
		return 0, "negative count " + string(raw)
	case frac:
		return 0, "expected an integer count, got fractional " + string(raw)
	case !ok || v > MaxQuantity:
		return 0, "count " + string(raw) + " out of range (max 10^12)"
	}
	return v, ""
}

// validNumber reports whether b is exactly one JSON number.
func validNumber(b []byte) bool {
	s := scanner{data: b}
	if len(b) == 0 {
		return false
	}
	if _, err := s.numberRaw(); err != nil {
		return false
	}
	return s.pos == len(b)
}

func quoteText(b []byte) string {
	const max = 64
	if len(b) > max {
		return "\"" + string(b[:max]) + "…\""
	}
	return "\"" + string(b) + "\""
}

// Bounds for event times: anything earlier is almost certainly a unit mistake
// (epoch seconds sent as milliseconds lands in January 1970).
var (
	minEventTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	maxEventTime = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
)

// parseEpoch parses an epoch timestamp whose unit is 10^-scale seconds
// (scale 0: seconds, 3: milliseconds, 9: nanoseconds). Sub-nanosecond digits
// are truncated.
func parseEpoch(raw []byte, scale int, unit string) (time.Time, string) {
	if !validNumber(raw) {
		return time.Time{}, "expected epoch " + unit + ", got " + quoteText(raw)
	}
	ns, _, neg, ok := scaledInt(raw, 9-scale)
	if neg || !ok {
		return time.Time{}, "epoch " + unit + " " + string(raw) + " out of range"
	}
	t := time.Unix(0, ns).UTC()
	if t.Before(minEventTime) {
		return time.Time{}, "epoch " + unit + " " + string(raw) + " is before 2000-01-01; wrong unit?"
	}
	return t, ""
}

// parseTimestamp parses an RFC 3339 timestamp ("2026-02-22T00:00:00.123Z",
// "2026-02-22 00:00:00.123456+00:00"). A timestamp without a zone is taken in
// naive when naive is not nil and refused otherwise. The result is in UTC.
// It allocates nothing, unlike time.Parse with a numeric offset.
func parseTimestamp(b []byte, naive *time.Location) (time.Time, string) {
	bad := func() (time.Time, string) {
		return time.Time{}, "expected an RFC 3339 timestamp, got " + quoteText(b)
	}
	num := func(p []byte) int {
		n := 0
		for _, c := range p {
			if c < '0' || c > '9' {
				return -1
			}
			n = n*10 + int(c-'0')
		}
		return n
	}
	if len(b) < 19 || b[4] != '-' || b[7] != '-' || b[13] != ':' || b[16] != ':' {
		return bad()
	}
	if c := b[10]; c != 'T' && c != 't' && c != ' ' {
		return bad()
	}
	year, month, day := num(b[0:4]), num(b[5:7]), num(b[8:10])
	hour, minute, sec := num(b[11:13]), num(b[14:16]), num(b[17:19])
	if year < 0 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 ||
		minute < 0 || minute > 59 || sec < 0 || sec > 59 {
		return bad()
	}
	if day > daysIn(time.Month(month), year) {
		return bad()
	}
	i := 19
	nsec := 0
	if i < len(b) && b[i] == '.' {
		i++
		j := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			if i-j < 9 {
				nsec = nsec*10 + int(b[i]-'0')
			}
			i++
		}
		if i == j {
			return bad()
		}
		for k := i - j; k < 9; k++ {
			nsec *= 10
		}
	}
	loc := time.UTC
	offset := 0
	switch {
	case i == len(b):
		if naive == nil {
			return time.Time{}, "timestamp " + quoteText(b) + " has no time zone"
		}
		loc = naive
	case len(b)-i == 1 && (b[i] == 'Z' || b[i] == 'z'):
	case len(b)-i == 6 && (b[i] == '+' || b[i] == '-') && b[i+3] == ':':
		oh, om := num(b[i+1:i+3]), num(b[i+4:i+6])
		if oh < 0 || oh > 23 || om < 0 || om > 59 {
			return bad()
		}
		offset = (oh*60 + om) * 60
		if b[i] == '-' {
			offset = -offset
		}
	default:
		return bad()
	}
	var t time.Time
	if loc == time.UTC {
		// time.Date normalizes and consults the zone; for a UTC offset
		// plain arithmetic is exact and several times faster.
		secs := daysFromCivil(year, month, day)*86400 + int64(hour*3600+minute*60+sec) - int64(offset)
		t = time.Unix(secs, int64(nsec)).UTC()
	} else {
		t = time.Date(year, time.Month(month), day, hour, minute, sec, nsec, loc).UTC()
	}
	if t.Before(minEventTime) || t.After(maxEventTime) {
		return time.Time{}, "timestamp " + quoteText(b) + " is before 2000-01-01"
	}
	return t, ""
}

func daysIn(m time.Month, year int) int {
	switch m {
	case time.February:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case time.April, time.June, time.September, time.November:
		return 30
	}
	return 31
}

// daysFromCivil returns the days since 1970-01-01 of a proleptic Gregorian
// date (Howard Hinnant's algorithm). Tested against time.Date.
func daysFromCivil(y, m, d int) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era--
	}
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return int64(era)*146097 + int64(doe) - 719468
}

// maxReportedCost bounds a partner-reported cost (USD per event).
var maxReportedCost = decimal.New(1, 9)

// parseCost parses a partner-reported cost from a JSON number's text (or a
// decimal string) into a decimal, exactly. Negative costs are refused.
func parseCost(raw []byte) (decimal.Decimal, string) {
	if !validNumber(raw) {
		return decimal.Decimal{}, "expected a decimal amount, got " + quoteText(raw)
	}
	// Bound the exponent before handing the text to decimal: "1e999999999"
	// is valid JSON but would make decimal build an enormous integer later.
	if len(raw) > 64 {
		return decimal.Decimal{}, "amount " + quoteText(raw) + " too long"
	}
	d, err := decimal.NewFromString(string(raw))
	if err != nil || d.Exponent() < -40 || d.Exponent() > 20 {
		return decimal.Decimal{}, "amount " + quoteText(raw) + " out of range"
	}
	if d.IsNegative() {
		return decimal.Decimal{}, "negative amount " + string(raw)
	}
	if d.GreaterThan(maxReportedCost) {
		return decimal.Decimal{}, "amount " + string(raw) + " exceeds 10^9"
	}
	return d, ""
}
