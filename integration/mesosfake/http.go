package mesosfake

import (
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/mesos/mesos-go/api/v1/lib/encoding"
	"github.com/mesos/mesos-go/api/v1/lib/encoding/codecs"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
)

const maxCallBytes = 16 << 20

// serveScheduler is POST /api/v1/scheduler, in the order of checks of
// Master::Http::scheduler (src/master/http.cpp): leadership, method,
// Content-Type, parse, validation; then SUBSCRIBE opens a stream and every
// other call needs a subscribed framework and its stream id.
func (m *Master) serveScheduler(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxCallBytes))
	if err != nil {
		http.Error(w, "Failed to read request body", http.StatusBadRequest)
		return
	}
	codec, ctStatus, ctMsg := requestCodec(r)
	var call *scheduler.Call
	parseMsg := ""
	if ctStatus == 0 {
		call, parseMsg = decodeCall(codec, body)
	}

	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		http.Error(w, "master is shutting down", http.StatusServiceUnavailable)
		return
	}
	if m.standby {
		leader := m.leader
		status := http.StatusTemporaryRedirect
		if leader == "" {
			status = http.StatusServiceUnavailable
		}
		m.recordLocked(call, r, status)
		m.mu.Unlock()
		if leader == "" {
			http.Error(w, "No leader elected", status)
			return
		}
		// Protocol-relative, as Master::Http::redirect: mesos-go keeps its
		// own scheme and path and takes the host from here.
		w.Header().Set("Location", "//"+leader+r.URL.Path)
		w.WriteHeader(status)
		return
	}
	status, msg := 0, ""
	switch {
	case r.Method != http.MethodPost:
		w.Header().Set("Allow", http.MethodPost)
		status, msg = http.StatusMethodNotAllowed, "Expecting a 'POST' request, received '"+r.Method+"'"
	case ctStatus != 0:
		status, msg = ctStatus, ctMsg
	case parseMsg != "":
		status, msg = http.StatusBadRequest, parseMsg
	default:
		if v := validateCall(call); v != "" {
			status, msg = http.StatusBadRequest, "Failed to validate scheduler::Call: "+v
		}
	}
	if status != 0 {
		m.recordLocked(call, r, status)
		m.notifyLocked()
		m.mu.Unlock()
		http.Error(w, msg, status)
		return
	}
	if call.Type == scheduler.Call_SUBSCRIBE {
		m.serveSubscribeLocked(w, r, call) // unlocks
		return
	}
	status, msg = m.handleCallLocked(call, r.Header.Get("Mesos-Stream-Id"))
	m.recordLocked(call, r, status)
	m.notifyLocked()
	m.mu.Unlock()
	if status == http.StatusAccepted {
		w.WriteHeader(status)
		return
	}
	http.Error(w, msg, status)
}

// serveSubscribeLocked answers a valid SUBSCRIBE with m.mu held, releases it,
// and then streams events until the subscription ends.
func (m *Master) serveSubscribeLocked(w http.ResponseWriter, r *http.Request, call *scheduler.Call) {
	codec, ok := negotiateAccept(r.Header.Values("Accept"))
	status, msg := 0, ""
	switch {
	case !ok:
		status, msg = http.StatusNotAcceptable, "Expecting 'Accept' to allow 'application/x-protobuf' or 'application/json'"
	case r.Header.Get("Mesos-Stream-Id") != "":
		status, msg = http.StatusBadRequest, "Subscribe calls should not include the 'Mesos-Stream-Id' header"
	}
	if status != 0 {
		m.recordLocked(call, r, status)
		m.notifyLocked()
		m.mu.Unlock()
		http.Error(w, msg, status)
		return
	}
	s := newStream(codec)
	m.subscribeLocked(s, call)
	m.recordLocked(call, r, http.StatusOK)
	m.notifyLocked()
	m.mu.Unlock()

	aborted := s.serve(w, r, m.shutdown)
	m.streamEnded(s)
	if aborted {
		panic(http.ErrAbortHandler) // net/http cuts the connection, silently
	}
}

// requestCodec picks the codec of a call's body from its Content-Type.
func requestCodec(r *http.Request) (encoding.Codec, int, string) {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return encoding.Codec{}, http.StatusBadRequest, "Expecting 'Content-Type' to be present"
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err == nil {
		if c, ok := codecs.ByMediaType[encoding.MediaType(mt)]; ok {
			return c, 0, ""
		}
	}
	return encoding.Codec{}, http.StatusUnsupportedMediaType,
		"Expecting 'Content-Type' of " + string(codecs.MediaTypeJSON) + " or " + string(codecs.MediaTypeProtobuf)
}

// decodeCall decodes a call with mesos-go's own codec. JSON bodies are
// round-tripped through protobuf so that missing required fields are refused
// as the real master's IsInitialized check does.
func decodeCall(codec encoding.Codec, body []byte) (*scheduler.Call, string) {
	var call scheduler.Call
	dec := codec.NewDecoder(encoding.SourceReader(bytes.NewReader(body)))
	if err := dec.Decode(&call); err != nil {
		if codec.Type == codecs.MediaTypeJSON {
			return nil, "Failed to convert JSON into Call protobuf: " + err.Error()
		}
		return nil, "Failed to parse body into Call protobuf: " + err.Error()
	}
	if codec.Type == codecs.MediaTypeJSON {
		b, err := call.Marshal()
		if err == nil {
			var again scheduler.Call
			err = again.Unmarshal(b)
		}
		if err != nil {
			return nil, "Failed to convert JSON into Call protobuf: " + err.Error()
		}
	}
	return &call, ""
}

// validateCall mirrors validation::scheduler::call::validate.
func validateCall(c *scheduler.Call) string {
	if c.Type == scheduler.Call_UNKNOWN {
		return "Expecting 'type' to be present"
	}
	if c.Type == scheduler.Call_SUBSCRIBE {
		if c.Subscribe == nil || c.Subscribe.FrameworkInfo == nil {
			return "Expecting 'subscribe' to be present"
		}
		info := c.Subscribe.FrameworkInfo
		if (c.FrameworkID != nil || info.ID != nil) && c.GetFrameworkID().GetValue() != info.GetID().GetValue() {
			return "'framework_id' differs from 'subscribe.framework_info.id'"
		}
		return ""
	}
	if c.FrameworkID == nil {
		return "Expecting 'framework_id' to be present"
	}
	missing := func(name string) string { return "Expecting '" + name + "' to be present" }
	switch c.Type {
	case scheduler.Call_ACCEPT:
		if c.Accept == nil {
			return missing("accept")
		}
	case scheduler.Call_DECLINE:
		if c.Decline == nil {
			return missing("decline")
		}
	case scheduler.Call_ACCEPT_INVERSE_OFFERS:
		if c.AcceptInverseOffers == nil {
			return missing("accept_inverse_offers")
		}
	case scheduler.Call_DECLINE_INVERSE_OFFERS:
		if c.DeclineInverseOffers == nil {
			return missing("decline_inverse_offers")
		}
	case scheduler.Call_KILL:
		if c.Kill == nil {
			return missing("kill")
		}
	case scheduler.Call_SHUTDOWN:
		if c.Shutdown == nil {
			return missing("shutdown")
		}
	case scheduler.Call_ACKNOWLEDGE:
		if c.Acknowledge == nil {
			return missing("acknowledge")
		}
		if len(c.Acknowledge.UUID) != 16 {
			return "Invalid UUID: expected 16 bytes, got " + strconv.Itoa(len(c.Acknowledge.UUID))
		}
	case scheduler.Call_ACKNOWLEDGE_OPERATION_STATUS:
		if c.AcknowledgeOperationStatus == nil {
			return missing("acknowledge_operation_status")
		}
	case scheduler.Call_RECONCILE:
		if c.Reconcile == nil {
			return missing("reconcile")
		}
	case scheduler.Call_RECONCILE_OPERATIONS:
		if c.ReconcileOperations == nil {
			return missing("reconcile_operations")
		}
	case scheduler.Call_MESSAGE:
		if c.Message == nil {
			return missing("message")
		}
	case scheduler.Call_REQUEST:
		if c.Request == nil {
			return missing("request")
		}
	case scheduler.Call_UPDATE_FRAMEWORK:
		if c.UpdateFramework == nil {
			return missing("update_framework")
		}
	}
	return ""
}

// negotiateAccept chooses the SUBSCRIBE response codec as the real master:
// JSON if acceptable, else protobuf, else none (406). No Accept header
// accepts everything.
func negotiateAccept(values []string) (encoding.Codec, bool) {
	var ranges []string
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			if p := strings.TrimSpace(part); p != "" {
				ranges = append(ranges, p)
			}
		}
	}
	if len(ranges) == 0 {
		return codecs.ByMediaType[codecs.MediaTypeJSON], true
	}
	for _, mt := range []encoding.MediaType{codecs.MediaTypeJSON, codecs.MediaTypeProtobuf} {
		if acceptsMediaType(ranges, string(mt)) {
			return codecs.ByMediaType[mt], true
		}
	}
	return encoding.Codec{}, false
}

// acceptsMediaType applies the most specific matching media range's q value.
func acceptsMediaType(ranges []string, mt string) bool {
	typ, _, _ := strings.Cut(mt, "/")
	best, bestQ := -1, 0.0
	for _, r := range ranges {
		rt, params, err := mime.ParseMediaType(r)
		if err != nil {
			continue
		}
		spec := -1
		switch {
		case rt == mt:
			spec = 2
		case rt == typ+"/*":
			spec = 1
		case rt == "*/*":
			spec = 0
		}
		if spec <= best {
			continue
		}
		q := 1.0
		if s, ok := params["q"]; ok {
			if f, err := strconv.ParseFloat(s, 64); err == nil {
				q = f
			}
		}
		best, bestQ = spec, q
	}
	return best >= 0 && bestQ > 0
}

// recordLocked appends a call to the log that Calls and WaitCall read.
func (m *Master) recordLocked(call *scheduler.Call, r *http.Request, status int) {
	rec := CallRecord{Status: status, StreamID: r.Header.Get("Mesos-Stream-Id"), Call: call}
	if call != nil {
		rec.Type = call.Type
		rec.FrameworkID = call.GetFrameworkID().GetValue()
	}
	m.calls = append(m.calls, rec)
}

// serveRedirect is GET /redirect: 307 to the leader's base URL, also when
// this master leads (Master::Http::redirect).
func (m *Master) serveRedirect(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	leader := m.hostPort
	if m.standby {
		leader = m.leader
	}
	m.mu.Unlock()
	if leader == "" {
		http.Error(w, "No leader elected", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Location", "//"+leader)
	w.WriteHeader(http.StatusTemporaryRedirect)
}

// serveState is GET /state: a subset of the real master's state JSON.
func (m *Master) serveState(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	if m.standby {
		leader := m.leader
		m.mu.Unlock()
		if leader == "" {
			http.Error(w, "No leader elected", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Location", "//"+leader+r.URL.Path)
		w.WriteHeader(http.StatusTemporaryRedirect)
		return
	}
	st := m.stateLocked()
	m.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(st)
}
