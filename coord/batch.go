package coord

import (
	"errors"
	"fmt"
)

// MaxBatchOps is the most ops one Apply takes. It keeps a batch, with the
// checks a backend adds to it, within etcd's default --max-txn-ops of 128 and
// a ZooKeeper multi well within its request limit. Larger batches, and
// batches whose values add up to more than MaxValueSize, are refused with
// ErrBatchTooLarge before anything is sent.
const MaxBatchOps = 100

// QuickBatchOps is the size to cut batches to where round trips count. A
// batch of at most this many ops, each on a node of its own, that creates
// nodes under parents that exist and sets or deletes nodes at the versions
// expected is, in the common case, one round trip on either backend: on
// etcd its checks are then the compares of its one transaction (two or
// three per op), within the server's limit of 128; a larger one, or one
// whose checks fail, is read before it is written.
const QuickBatchOps = 60

// OpKind says what an Op does.
type OpKind int

// The kinds of Op; the zero Op has none and is refused.
const (
	OpCreate OpKind = iota + 1
	OpSet
	OpDelete
)

func (k OpKind) String() string {
	switch k {
	case OpCreate:
		return "create"
	case OpSet:
		return "set"
	case OpDelete:
		return "delete"
	}
	return fmt.Sprintf("OpKind(%d)", int(k))
}

// Op is one write of a batch; make one with CreateOp, SetOp or DeleteOp.
type Op struct {
	kind    OpKind
	Path    string
	Value   []byte
	Version Version
}

// Kind says what the op does; backends switch on it.
func (o Op) Kind() OpKind { return o.kind }

// CreateOp makes a persistent node. Its parent must exist or be made by an
// earlier op of the same batch: unlike Create, a batch makes no parents
// (ErrNotFound at this op otherwise).
func CreateOp(path string, value []byte) Op {
	return Op{kind: OpCreate, Path: path, Value: value}
}

// SetOp replaces a node's value if its version is expected (or expected is
// AnyVersion), as Set does. A node written by an earlier op of the same
// batch has a version nobody can know yet: only AnyVersion matches it.
func SetOp(path string, value []byte, expected Version) Op {
	return Op{kind: OpSet, Path: path, Value: value, Version: expected}
}

// DeleteOp removes a node without children if its version is expected (or
// expected is AnyVersion), as Delete does. Children deleted by earlier ops
// of the same batch do not count.
func DeleteOp(path string, expected Version) Op {
	return Op{kind: OpDelete, Path: path, Version: expected}
}

// OpResult is what one op did: Version is the node's new version (create,
// set), the one a following Get returns; 0 for delete.
type OpResult struct {
	Path    string
	Version Version
}

// OpError says which op of a batch failed; Err wraps the sentinel
// (ErrExists, ErrNotFound, ErrVersionConflict, ErrNotEmpty, ErrInvalidPath,
// ErrEphemeralParent). Nothing of the batch was written.
type OpError struct {
	Index int
	Op    Op
	Err   error
}

func (e *OpError) Error() string {
	return fmt.Sprintf("batch op %d (%s %s): %v", e.Index, e.Op.kind, e.Op.Path, e.Err)
}

func (e *OpError) Unwrap() error { return e.Err }

// errNoKind is the error of an Op not made by CreateOp, SetOp or DeleteOp.
var errNoKind = errors.New("coord: op not made by CreateOp, SetOp or DeleteOp")

// CheckBatch checks a batch against the rules every backend shares, before
// anything is sent: at most MaxBatchOps ops whose values add up to at most
// MaxValueSize (ErrBatchTooLarge), and every op made by a constructor, on a
// valid node path (an *OpError wrapping ErrInvalidPath).
func CheckBatch(ops []Op) error {
	if len(ops) > MaxBatchOps {
		return fmt.Errorf("%w: %d ops, at most %d", ErrBatchTooLarge, len(ops), MaxBatchOps)
	}
	size := 0
	for _, op := range ops {
		size += len(op.Value)
	}
	if size > MaxValueSize {
		return fmt.Errorf("%w: values of %d bytes, at most %d", ErrBatchTooLarge, size, MaxValueSize)
	}
	for i, op := range ops {
		switch op.kind {
		case OpCreate, OpSet, OpDelete:
		default:
			return &OpError{Index: i, Op: op, Err: errNoKind}
		}
		if err := ValidateNodePath(op.Path); err != nil {
			return &OpError{Index: i, Op: op, Err: err}
		}
	}
	return nil
}
