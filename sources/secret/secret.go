// Package secret reads the secrets of tariff's HTTP front doors (partner
// tokens, HMAC keys, upstream API keys) from the environment or a file,
// so that a configuration file never holds one and no log ever shows one.
package secret

import (
	"bytes"
	"fmt"
	"os"
	"strings"
)

// Secret says where a secret is read from: an environment variable or a
// file (whose surrounding whitespace, such as a final newline, is
// trimmed). Exactly one of the two. Secrets are read once, at start, and
// never logged.
type Secret struct {
	Env  string `yaml:"env"`
	File string `yaml:"file"`
}

// IsSet reports whether the secret names a source.
func (s Secret) IsSet() bool { return s.Env != "" || s.File != "" }

// String never reveals the secret, only where it comes from.
func (s Secret) String() string {
	switch {
	case s.Env != "":
		return "env:" + s.Env
	case s.File != "":
		return "file:" + s.File
	}
	return "unset"
}

// Validate checks that exactly one source is named; field names the
// secret in the error.
func (s Secret) Validate(field string) error {
	switch {
	case !s.IsSet():
		return fmt.Errorf("%s: expected env (an environment variable name) or file (a path)", field)
	case s.Env != "" && s.File != "":
		return fmt.Errorf("%s: both env and file are set: expected one", field)
	}
	return nil
}

// Load reads the secret, which must be at least minLen bytes. An error
// says how long a too-short secret is, never what it is.
func (s Secret) Load(field string, minLen int) ([]byte, error) {
	var v []byte
	switch {
	case s.Env != "":
		e, ok := os.LookupEnv(s.Env)
		if !ok {
			return nil, fmt.Errorf("%s.env: environment variable %s is not set", field, s.Env)
		}
		v = []byte(strings.TrimSpace(e))
	case s.File != "":
		b, err := os.ReadFile(s.File)
		if err != nil {
			return nil, fmt.Errorf("%s.file: %w", field, err)
		}
		v = bytes.TrimSpace(b)
	default:
		return nil, fmt.Errorf("%s: expected env or file", field)
	}
	if len(v) < minLen {
		return nil, fmt.Errorf("%s (%s): %d bytes: expected at least %d", field, s, len(v), minLen)
	}
	return v, nil
}
