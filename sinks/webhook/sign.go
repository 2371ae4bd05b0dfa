// Package webhook is the one signing scheme of tariff's outgoing webhooks
// (price versions, balance alerts): how a request is signed and sent, how
// a receiver verifies it, and how failed attempts back off.
//
// A delivery is a JSON POST. X-Tariff-Signature is "sha256=" followed by
// the hex HMAC-SHA256, keyed with the endpoint's shared secret, of
// "<X-Tariff-Timestamp>.<body>": the timestamp (Unix seconds, as sent in
// the header), a dot, then the body byte for byte. Signing the timestamp
// with the body lets a receiver refuse a replayed old delivery (Verify).
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Headers of every delivery.
const (
	HeaderTimestamp = "X-Tariff-Timestamp"
	HeaderSignature = "X-Tariff-Signature"
	// HeaderDelivery names what is delivered (a price version's id); the
	// same on every attempt.
	HeaderDelivery = "X-Tariff-Delivery"
	// HeaderEvent says what kind of event the body is (balance_alert,
	// price_version), so one endpoint can receive several kinds.
	HeaderEvent = "X-Tariff-Event"
	// HeaderIdempotencyKey is the key receivers deduplicate on: the same
	// on every attempt and on a redelivery after a crash.
	HeaderIdempotencyKey = "Idempotency-Key"
)

// Sign returns the signature header value for body sent at timestamp
// (Unix seconds).
func Sign(secret []byte, timestamp int64, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(strconv.FormatInt(timestamp, 10)))
	m.Write([]byte{'.'})
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// ErrBadSignature: a webhook delivery's signature does not verify.
var ErrBadSignature = errors.New("webhook signature does not verify")

// Verify checks a delivery as a receiver should: the signature matches
// (compared in constant time) and the timestamp is within tolerance of
// now. timestamp and signature are the header values as received.
func Verify(secret []byte, timestamp, signature string, body []byte, now time.Time, tolerance time.Duration) error {
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("%s %q: expected Unix seconds: %w", HeaderTimestamp, timestamp, ErrBadSignature)
	}
	if d := now.Sub(time.Unix(ts, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%s %d is %s from now, more than %s: %w", HeaderTimestamp, ts, d.Round(time.Second), tolerance, ErrBadSignature)
	}
	if !hmac.Equal([]byte(Sign(secret, ts, body)), []byte(signature)) {
		return ErrBadSignature
	}
	return nil
}
