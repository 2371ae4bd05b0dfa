package gateway

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/tariff-dev/tariff/schemas"
)

// Gateway keys identify customers. A key is "tgw_" + an 8-hex-digit id +
// "_" + 43 base64url characters (256 random bits). Only its SHA-256 is
// stored, in the key file, one line per key:
//
//	<id> sha256:<64 hex digits> <customer id> <created, RFC 3339>
//
// The id is not secret: it names the key in logs, in usage events
// (dimension key_id) and for revocation. The key itself is printed once,
// by AddKey, and exists nowhere else.

const (
	keyPrefix  = "tgw_"
	keyIDBytes = 4
	keySecret  = 32
	// keyFileHeader starts every key file written here.
	keyFileHeader = "# tariff gateway keys: <id> sha256:<hex of SHA-256(key)> <customer id> <created>\n" +
		"# Written by `tariff gateway keys add`. Holds no key, only its hash.\n"
)

// KeyRecord is one line of the key file.
type KeyRecord struct {
	ID       string
	Hash     [sha256.Size]byte
	Customer string
	Created  time.Time
}

// NewKey returns a new random gateway key and its id.
func NewKey() (key, id string) {
	var b [keyIDBytes + keySecret]byte
	_, _ = rand.Read(b[:]) // never fails (Go 1.24+)
	id = hex.EncodeToString(b[:keyIDBytes])
	return keyPrefix + id + "_" + base64.RawURLEncoding.EncodeToString(b[keyIDBytes:]), id
}

// HashKey is what the key file stores of a key.
func HashKey(key string) [sha256.Size]byte { return sha256.Sum256([]byte(key)) }

// ValidCustomerID checks a customer id for the key file and the trusted
// header: 1..512 bytes of printable UTF-8 without spaces.
func ValidCustomerID(c string) error {
	switch {
	case c == "":
		return errors.New("empty: expected a customer id")
	case len(c) > schemas.MaxIDLen:
		return fmt.Errorf("%d bytes: expected at most %d", len(c), schemas.MaxIDLen)
	case !utf8.ValidString(c):
		return errors.New("not valid UTF-8")
	}
	for _, r := range c {
		if r <= ' ' || r == 0x7f || r == utf8.RuneError {
			return fmt.Errorf("%q: expected no spaces or control characters", c)
		}
	}
	return nil
}

// ReadKeyFile parses a key file. A missing file holds no keys.
func ReadKeyFile(path string) ([]KeyRecord, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read key file: %w", err)
	}
	return parseKeyFile(path, data)
}

func parseKeyFile(path string, data []byte) ([]KeyRecord, error) {
	var recs []KeyRecord
	ids := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Fields(line)
		bad := func(what string) error {
			return fmt.Errorf("key file %s: line %d: %s: expected \"<id> sha256:<64 hex digits> <customer id> <created RFC 3339>\"", path, n, what)
		}
		if len(f) != 4 {
			return nil, bad(fmt.Sprintf("%d fields", len(f)))
		}
		var r KeyRecord
		r.ID, r.Customer = f[0], f[2]
		h, ok := strings.CutPrefix(f[1], "sha256:")
		if !ok || len(h) != 2*sha256.Size {
			return nil, bad("hash " + f[1])
		}
		if _, err := hex.Decode(r.Hash[:], []byte(h)); err != nil {
			return nil, bad("hash is not hex")
		}
		if err := ValidCustomerID(r.Customer); err != nil {
			return nil, bad("customer id " + err.Error())
		}
		t, err := time.Parse(time.RFC3339, f[3])
		if err != nil {
			return nil, bad("created " + f[3])
		}
		r.Created = t
		if j, dup := ids[r.ID]; dup {
			return nil, bad(fmt.Sprintf("id %s already on line %d", r.ID, j))
		}
		ids[r.ID] = n
		recs = append(recs, r)
	}
	return recs, sc.Err()
}

func (r *KeyRecord) line() string {
	return r.ID + " sha256:" + hex.EncodeToString(r.Hash[:]) + " " + r.Customer + " " + r.Created.UTC().Format(time.RFC3339) + "\n"
}

// lockKeyFile takes an exclusive lock on path+".lock", so that concurrent
// `keys add` and `keys revoke` do not lose each other's lines.
func lockKeyFile(path string) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create key file directory: %w", err)
	}
	f, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock key file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock key file: %w", err)
	}
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

// AddKey issues a key for customer, appends its hash to the key file
// (created with mode 0600 if missing) and fsyncs it. The key is returned
// once and stored nowhere: print it, and do not log it.
func AddKey(path, customer string, now time.Time) (string, KeyRecord, error) {
	if err := ValidCustomerID(customer); err != nil {
		return "", KeyRecord{}, fmt.Errorf("customer id: %w", err)
	}
	unlock, err := lockKeyFile(path)
	if err != nil {
		return "", KeyRecord{}, err
	}
	defer unlock()
	recs, err := ReadKeyFile(path)
	if err != nil {
		return "", KeyRecord{}, err
	}
	var key, id string
	for {
		key, id = NewKey()
		unique := true
		for i := range recs {
			unique = unique && recs[i].ID != id
		}
		if unique {
			break
		}
	}
	r := KeyRecord{ID: id, Hash: HashKey(key), Customer: customer, Created: now.UTC().Truncate(time.Second)}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return "", KeyRecord{}, fmt.Errorf("open key file: %w", err)
	}
	st, err := f.Stat()
	if err == nil && st.Size() == 0 {
		_, err = f.WriteString(keyFileHeader)
	}
	if err == nil {
		_, err = f.WriteString(r.line())
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", KeyRecord{}, fmt.Errorf("write key file %s: %w", path, err)
	}
	return key, r, nil
}

// RevokeKeys removes the keys whose id is id, or every key of customer when
// id is empty, rewriting the file atomically. It returns the records removed.
func RevokeKeys(path, id, customer string) ([]KeyRecord, error) {
	if (id == "") == (customer == "") {
		return nil, errors.New("revoke: expected a key id or a customer id")
	}
	unlock, err := lockKeyFile(path)
	if err != nil {
		return nil, err
	}
	defer unlock()
	recs, err := ReadKeyFile(path)
	if err != nil {
		return nil, err
	}
	var keep, gone []KeyRecord
	for _, r := range recs {
		if (id != "" && r.ID == id) || (customer != "" && r.Customer == customer) {
			gone = append(gone, r)
		} else {
			keep = append(keep, r)
		}
	}
	if len(gone) == 0 {
		return nil, nil
	}
	var b strings.Builder
	b.WriteString(keyFileHeader)
	for i := range keep {
		b.WriteString(keep[i].line())
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("write key file: %w", err)
	}
	_, err = f.WriteString(b.String())
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return nil, fmt.Errorf("write key file %s: %w", path, err)
	}
	return gone, nil
}

// KeyStore answers which customer a key belongs to, from the key file,
// re-read when it changes. Lookups are lock-free.
type KeyStore struct {
	path string
	set  atomic.Pointer[map[[sha256.Size]byte]*KeyRecord]

	mu      sync.Mutex // serializes Reload
	modTime time.Time
	size    int64
}

// OpenKeyStore loads the key file at path (a missing file: no keys yet).
func OpenKeyStore(path string) (*KeyStore, error) {
	k := &KeyStore{path: path}
	empty := map[[sha256.Size]byte]*KeyRecord{}
	k.set.Store(&empty)
	if _, err := k.Reload(); err != nil {
		return nil, err
	}
	return k, nil
}

// Len is the number of keys loaded.
func (k *KeyStore) Len() int { return len(*k.set.Load()) }

// lookup finds the key whose hash is sum.
func (k *KeyStore) lookup(sum *[sha256.Size]byte) (*KeyRecord, bool) {
	r, ok := (*k.set.Load())[*sum]
	return r, ok
}

// Reload re-reads the file when its size or modification time changed,
// and reports whether it did. On error the keys loaded before stay in use.
func (k *KeyStore) Reload() (bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	st, err := os.Stat(k.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if k.size == 0 && k.modTime.IsZero() {
			return false, nil
		}
		st = nil
	case err != nil:
		return false, fmt.Errorf("key file: %w", err)
	}
	if st != nil && st.ModTime().Equal(k.modTime) && st.Size() == k.size {
		return false, nil
	}
	recs, err := ReadKeyFile(k.path)
	if err != nil {
		return false, err
	}
	m := make(map[[sha256.Size]byte]*KeyRecord, len(recs))
	for i := range recs {
		m[recs[i].Hash] = &recs[i]
	}
	k.set.Store(&m)
	if st != nil {
		k.modTime, k.size = st.ModTime(), st.Size()
	} else {
		k.modTime, k.size = time.Time{}, 0
	}
	return true, nil
}
