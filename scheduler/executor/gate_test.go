package executor

import (
	"errors"
	"testing"
	"time"
)

func TestGateRefusesAfterShutAndWaitsForCallsInFlight(t *testing.T) {
	var g Gate
	errClosed := errors.New("closed")
	end, err := g.Enter(errClosed)
	if err != nil || g.Closed() {
		t.Fatalf("Enter on an open gate: %v, closed %v", err, g.Closed())
	}
	g.Shut()
	if _, err := g.Enter(errClosed); !errors.Is(err, errClosed) || !g.Closed() {
		t.Fatalf("Enter after Shut = %v, closed %v; want the closed error", err, g.Closed())
	}
	waited := make(chan struct{})
	go func() { g.Wait(); close(waited) }()
	select {
	case <-waited:
		t.Fatal("Wait returned while a call was in flight")
	case <-time.After(50 * time.Millisecond):
	}
	end()
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return once the call ended")
	}
}
