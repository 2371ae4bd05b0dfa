package pipeline

import (
	"context"

	"github.com/segmentio/kafka-go"

	"github.com/tariff-dev/tariff/rating"
	"github.com/tariff-dev/tariff/sources"
)

// Exported for the tests of package pipeline_test, which use the real
// rate-card rater of pipeline/prices (a package that imports this one).

// DecodeRecord decodes a changelog record.
func DecodeRecord(b []byte) (int32, []Mutation, error) { return decodeRecord(b, nil) }

// ProcessMessages applies msgs as one batch, as Run does with a fetched
// batch.
func (p *Processor) ProcessMessages(msgs []kafka.Message) error {
	p.batch = sources.Batch{Messages: msgs}
	return p.process(context.Background(), context.Background())
}

// DecodeAssignments decodes a customer's rate-card assignments as kept in
// partition state.
func DecodeAssignments(b []byte) ([]rating.Assignment, error) { return decodeAssignments(b) }

// AssignmentKey is the partition-state key of a customer's rate-card
// assignments.
func AssignmentKey(partition int, customer string) []byte {
	return assignmentKey(nil, partition, customer)
}
