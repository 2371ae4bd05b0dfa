package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tariff-dev/tariff/sources"
)

func cmdSend(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("send", `Publish usage events to a Kafka topic, keyed by customer id, and wait for the
broker's acknowledgement. Each FILE (or standard input, or "-") holds one JSON
document per event: a single object, a JSON array of objects (each element is
sent as its own message), or one object per line.`, "[FILE...]", stderr)
	brokers := fs.String("brokers", "127.0.0.1:9092", "Kafka bootstrap addresses, comma-separated")
	topic := fs.String("topic", TopicGateway, "topic to publish to")
	keyField := fs.String("key-field", "customer_id", "JSON field whose value keys the message (so a customer's usage stays in one partition)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	files := fs.Args()
	if len(files) == 0 {
		files = []string{"-"}
	}
	var msgs []kafka.Message
	for _, f := range files {
		docs, err := readDocs(f)
		if err != nil {
			return err
		}
		for _, d := range docs {
			msgs = append(msgs, kafka.Message{Key: keyOf(d, *keyField), Value: d})
		}
	}
	if len(msgs) == 0 {
		return fmt.Errorf("no events found in %v", files)
	}
	w := &kafka.Writer{
		Addr:                   kafka.TCP(sources.SplitList(*brokers)...),
		Topic:                  *topic,
		Balancer:               &kafka.Hash{},
		RequiredAcks:           kafka.RequireAll,
		BatchTimeout:           5 * time.Millisecond,
		AllowAutoTopicCreation: true,
	}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		return fmt.Errorf("publish to %s on %s: %w", *topic, *brokers, err)
	}
	fmt.Fprintf(stdout, "sent %d events to %s\n", len(msgs), *topic)
	return nil
}

// readDocs splits a file into JSON documents: an array's elements, or the
// objects of a stream (one per line or concatenated).
func readDocs(path string) ([][]byte, error) {
	var r io.Reader = os.Stdin
	name := "standard input"
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r, name = f, path
	}
	data, err := io.ReadAll(bufio.NewReader(r))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		var arr []json.RawMessage
		if err := json.Unmarshal(trimmed, &arr); err != nil {
			return nil, fmt.Errorf("%s: not a JSON array of events: %w", name, err)
		}
		out := make([][]byte, len(arr))
		for i, a := range arr {
			out[i] = compact(a)
		}
		return out, nil
	}
	var out [][]byte
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	for i := 1; dec.More(); i++ {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", name, i, err)
		}
		out = append(out, compact(raw))
	}
	return out, nil
}

func compact(raw []byte) []byte {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return raw
	}
	return b.Bytes()
}

// keyOf returns the string value of a top-level field, or nil.
func keyOf(doc []byte, field string) []byte {
	var m map[string]json.RawMessage
	if json.Unmarshal(doc, &m) != nil {
		return nil
	}
	var s string
	if json.Unmarshal(m[field], &s) != nil {
		return nil
	}
	return []byte(s)
}
