package producer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"
	"testing"

	"github.com/segmentio/kafka-go"
)

func TestRetriable(t *testing.T) {
	f := func(err error, want bool) {
		t.Helper()
		if got := retriable(err); got != want {
			t.Errorf("retriable(%v) = %v, want %v", err, got, want)
		}
	}
	f(kafka.UnknownTopicOrPartition, true)
	f(kafka.NotLeaderForPartition, true)
	f(fmt.Errorf("dial: %w", syscall.ECONNREFUSED), true)
	f(io.EOF, true)
	f(kafka.WriteErrors{nil, kafka.LeaderNotAvailable}, true)
	f(kafka.WriteErrors{kafka.LeaderNotAvailable, kafka.TopicAuthorizationFailed}, false)
	f(kafka.TopicAuthorizationFailed, false)
	f(context.DeadlineExceeded, false)
	f(errors.New("something else"), false)
}

func TestTooLarge(t *testing.T) {
	if !tooLarge(kafka.WriteErrors{nil, kafka.MessageSizeTooLarge}) || !tooLarge(kafka.MessageTooLargeError{}) || tooLarge(kafka.LeaderNotAvailable) {
		t.Error("tooLarge misclassifies")
	}
}
