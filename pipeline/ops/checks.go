package ops

import (
	"context"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
	"github.com/segmentio/kafka-go"
)

// KafkaCheck passes when one of the brokers answers a metadata request
// (a listening port alone is not a broker that works). dialer carries TLS
// and SASL (sources.Security.Dialer); nil dials plaintext.
func KafkaCheck(brokers []string, dialer *kafka.Dialer) Check {
	return Check{Name: "kafka", Fn: func(ctx context.Context) error {
		if len(brokers) == 0 {
			return errors.New("no broker configured")
		}
		var errs []error
		for _, b := range brokers {
			err := pingKafka(ctx, dialer, b)
			if err == nil {
				return nil
			}
			errs = append(errs, fmt.Errorf("%s: %w", b, err))
		}
		return errors.Join(errs...)
	}}
}

func pingKafka(ctx context.Context, dialer *kafka.Dialer, addr string) error {
	if dialer == nil {
		dialer = &kafka.Dialer{}
	}
	conn, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	brokers, err := conn.Brokers()
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	if len(brokers) == 0 {
		return errors.New("metadata lists no broker")
	}
	return nil
}

// BadgerCheck passes while the state store is open and answers a read.
func BadgerCheck(db *badger.DB) Check {
	return Check{Name: "state", Fn: func(ctx context.Context) error {
		if db.IsClosed() {
			return errors.New("the state store is closed")
		}
		return db.View(func(txn *badger.Txn) error {
			_, err := txn.Get([]byte("\x00ops-readiness"))
			if errors.Is(err, badger.ErrKeyNotFound) {
				return nil
			}
			return err
		})
	}}
}
