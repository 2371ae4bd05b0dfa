package balance

import (
	"fmt"
	"strings"
)

// Enums travel as words in JSON (commands on Kafka, alerts on the alerts
// topic), never as numbers a reader would have to look up. Each enum type
// has a names table indexed by its value; these helpers do the rest.

func enumString(names []string, v uint8, typ string) string {
	if int(v) < len(names) && names[v] != "" {
		return names[v]
	}
	return fmt.Sprintf("%s(%d)", typ, v)
}

func enumParse(names []string, b []byte, typ string) (uint8, error) {
	for i, n := range names {
		if n != "" && n == string(b) {
			return uint8(i), nil
		}
	}
	var valid []string
	for _, n := range names {
		if n != "" {
			valid = append(valid, n)
		}
	}
	return 0, fmt.Errorf("%s %q: expected one of %s", typ, b, strings.Join(valid, ", "))
}
