package coord

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckBatch(t *testing.T) {
	ok := []Op{CreateOp("/a", []byte("v")), SetOp("/a", nil, AnyVersion), DeleteOp("/a", 7)}
	if err := CheckBatch(ok); err != nil {
		t.Fatalf("a valid batch: %v", err)
	}
	if err := CheckBatch(nil); err != nil {
		t.Fatalf("an empty batch: %v", err)
	}
	if err := CheckBatch(make([]Op, MaxBatchOps+1)); !errors.Is(err, ErrBatchTooLarge) {
		t.Fatalf("MaxBatchOps+1 ops: %v", err)
	}
	big := make([]byte, MaxValueSize/2+1)
	if err := CheckBatch([]Op{CreateOp("/a", big), SetOp("/b", big, AnyVersion)}); !errors.Is(err, ErrBatchTooLarge) {
		t.Fatalf("values over MaxValueSize: %v", err)
	}
	err := CheckBatch([]Op{CreateOp("/a", nil), DeleteOp("/b/", AnyVersion)})
	var oe *OpError
	if !errors.Is(err, ErrInvalidPath) || !errors.As(err, &oe) || oe.Index != 1 || oe.Op.Kind() != OpDelete {
		t.Fatalf("an invalid path: %v", err)
	}
	if !strings.Contains(err.Error(), "op 1 (delete /b/)") {
		t.Fatalf("the error does not name the op: %q", err)
	}
	if err := CheckBatch([]Op{{Path: "/a"}}); !errors.As(err, &oe) || oe.Index != 0 {
		t.Fatalf("an op made without a constructor: %v", err)
	}
}
