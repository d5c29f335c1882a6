package mesosfake

import (
	"net/http"
	"sync"

	"github.com/mesos/mesos-go/api/v1/lib/encoding"
	"github.com/mesos/mesos-go/api/v1/lib/encoding/framing"
	"github.com/mesos/mesos-go/api/v1/lib/recordio"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
)

// stream is one SUBSCRIBE response. The master appends events under its own
// lock and never blocks on the network; the handler goroutine that answered
// the SUBSCRIBE is the only writer of the response and drains the queue in
// order, one RecordIO frame and one flush per event.
type stream struct {
	id    string
	codec encoding.Codec

	// Guarded by Master.mu.
	fw *framework // nil once the stream no longer speaks for a framework
	hb *timer

	mu      sync.Mutex
	queue   []*scheduler.Event
	closing bool // set: send the queue, then end the response
	aborted bool // set: cut the connection at once, as a network failure
	wake    chan struct{}
}

func newStream(codec encoding.Codec) *stream {
	return &stream{id: newUUIDString(), codec: codec, wake: make(chan struct{}, 1)}
}

// send queues e; events sent after close are dropped.
func (s *stream) send(e *scheduler.Event) {
	s.mu.Lock()
	if !s.closing {
		s.queue = append(s.queue, e)
	}
	s.mu.Unlock()
	s.poke()
}

// close ends the response once the events already queued are written.
func (s *stream) close() {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	s.poke()
}

// abort cuts the connection without writing what is queued.
func (s *stream) abort() {
	s.mu.Lock()
	s.aborted, s.closing = true, true
	s.mu.Unlock()
	s.poke()
}

func (s *stream) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *stream) take() (events []*scheduler.Event, closing, aborted bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queue
	s.queue = nil
	return q, s.closing, s.aborted
}

// serve writes the stream until it is closed, the client goes away, or the
// master shuts down. It reports whether the stream was aborted: the caller
// then panics with http.ErrAbortHandler, so that the server cuts the
// connection instead of ending the chunked body.
func (s *stream) serve(w http.ResponseWriter, r *http.Request, shutdown <-chan struct{}) (aborted bool) {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", s.codec.Type.ContentType())
	h.Set("Mesos-Stream-Id", s.id)
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return false
	}
	enc := s.codec.NewEncoder(func() framing.Writer { return recordio.NewWriter(w) })
	for {
		events, closing, aborted := s.take()
		if aborted {
			return true
		}
		for _, e := range events {
			if err := enc.Encode(e); err != nil {
				return false
			}
			if err := rc.Flush(); err != nil {
				return false
			}
		}
		if closing {
			// Nothing can be queued after closing: the response ends here.
			return false
		}
		select {
		case <-s.wake:
		case <-r.Context().Done():
			return false
		case <-shutdown:
			return false
		}
	}
}
