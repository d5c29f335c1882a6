package mesosfake

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/encoding"
	"github.com/mesos/mesos-go/api/v1/lib/encoding/framing"
	"github.com/mesos/mesos-go/api/v1/lib/recordio"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler/calls"
)

// rawClient speaks HTTP without mesos-go's client, to check the wire.
type rawClient struct {
	t  *testing.T
	hc *http.Client
}

func newRawClient(t *testing.T) *rawClient {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &rawClient{t: t, hc: &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

func encodeCall(t *testing.T, codec encoding.Codec, call *scheduler.Call) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := codec.NewEncoder(encoding.SinkWriter(&b)).Encode(call); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// post sends a body with headers (name, value pairs) and returns the
// response; the caller closes its body.
func (rc *rawClient) post(url string, body []byte, headers ...string) *http.Response {
	rc.t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		rc.t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	resp, err := rc.hc.Do(req)
	if err != nil {
		rc.t.Fatal(err)
	}
	return resp
}

func (rc *rawClient) status(url string, body []byte, headers ...string) (int, string) {
	rc.t.Helper()
	resp := rc.post(url, body, headers...)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// rawStream is a SUBSCRIBE response read frame by frame.
type rawStream struct {
	resp *http.Response
	dec  encoding.Decoder
}

func (rc *rawClient) subscribe(url string, codec encoding.Codec, info *mesos.FrameworkInfo) *rawStream {
	rc.t.Helper()
	resp := rc.post(url, encodeCall(rc.t, codec, calls.Subscribe(info)),
		"Content-Type", codec.Type.ContentType(), "Accept", codec.Type.ContentType())
	rc.t.Cleanup(func() { resp.Body.Close() })
	return &rawStream{resp: resp, dec: codec.NewDecoder(func() framing.Reader { return recordio.NewReader(resp.Body) })}
}

func (s *rawStream) next(t *testing.T) *scheduler.Event {
	t.Helper()
	var e scheduler.Event
	if err := s.dec.Decode(&e); err != nil {
		t.Fatalf("decode event: %v", err)
	}
	return &e
}

// TestSubscribeResponseIsAChunkedRecordIOStream checks the stream's framing,
// the points on which mesos-go's client is strict: the codec's Content-Type,
// no Content-Length, a Mesos-Stream-Id, RecordIO frames.
func TestSubscribeResponseIsAChunkedRecordIOStream(t *testing.T) {
	for _, codec := range []encoding.Codec{protobuf, jsonC} {
		t.Run(codec.Name, func(t *testing.T) {
			checkLeaks(t)
			m := newMaster(t, Config{HeartbeatInterval: 2 * time.Second})
			rc := newRawClient(t)
			s := rc.subscribe(m.SchedulerURL(), codec, frameworkInfo("raw"))
			resp := s.resp
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, want 200", resp.StatusCode)
			}
			if ct := resp.Header.Get("Content-Type"); ct != codec.Type.ContentType() {
				t.Errorf("Content-Type %q, want %q", ct, codec.Type.ContentType())
			}
			if resp.ContentLength != -1 || resp.Header.Get("Content-Length") != "" {
				t.Errorf("Content-Length %d / %q, want none", resp.ContentLength, resp.Header.Get("Content-Length"))
			}
			if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
				t.Errorf("Transfer-Encoding %v, want chunked", resp.TransferEncoding)
			}
			sid := resp.Header.Get("Mesos-Stream-Id")
			if len(sid) != 36 {
				t.Errorf("Mesos-Stream-Id %q, want a UUID", sid)
			}
			e := s.next(t)
			if e.Type != scheduler.Event_SUBSCRIBED || e.Subscribed.GetHeartbeatIntervalSeconds() != 2 ||
				e.Subscribed.FrameworkID.Value == "" || e.Subscribed.MasterInfo == nil {
				t.Fatalf("first event %v, want SUBSCRIBED with framework id, heartbeat 2s and master_info", e)
			}
			if e := s.next(t); e.Type != scheduler.Event_HEARTBEAT {
				t.Fatalf("second event %s, want HEARTBEAT", e.Type)
			}
			fws := m.Frameworks()
			if len(fws) != 1 || !fws[0].Connected || fws[0].StreamID != sid {
				t.Fatalf("Frameworks() = %+v, want one connected with stream %s", fws, sid)
			}
		})
	}
}

// TestCallErrorsAsTheRealMaster checks the HTTP status of each way a call
// can be wrong, in the real master's order of checks.
func TestCallErrorsAsTheRealMaster(t *testing.T) {
	checkLeaks(t)
	m := newMaster(t, Config{})
	rc := newRawClient(t)
	url := m.SchedulerURL()
	pb := protobuf.Type.ContentType()

	s := rc.subscribe(url, protobuf, withFailover(frameworkInfo("errors"), time.Minute))
	sid := s.resp.Header.Get("Mesos-Stream-Id")
	fwID := s.next(t).Subscribed.FrameworkID.Value
	revive := encodeCall(t, protobuf, calls.Revive().With(calls.Framework(fwID)))

	get, err := rc.hc.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	get.Body.Close()
	if get.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: status %d, want 405", get.StatusCode)
	}

	for _, tc := range []struct {
		name    string
		body    []byte
		headers []string
		want    int
	}{
		{"no Content-Type", revive, nil, 400},
		{"unsupported Content-Type", revive, []string{"Content-Type", "text/plain"}, 415},
		{"undecodable body", []byte("\xff\xff\xff"), []string{"Content-Type", pb}, 400},
		{"bad JSON", []byte("{"), []string{"Content-Type", "application/json"}, 400},
		{"no framework_id", encodeCall(t, protobuf, calls.Revive()), []string{"Content-Type", pb, "Mesos-Stream-Id", sid}, 400},
		{"unknown framework", encodeCall(t, protobuf, calls.Revive().With(calls.Framework("nope"))), []string{"Content-Type", pb, "Mesos-Stream-Id", sid}, 400},
		{"no Mesos-Stream-Id", revive, []string{"Content-Type", pb}, 400},
		{"wrong Mesos-Stream-Id", revive, []string{"Content-Type", pb, "Mesos-Stream-Id", newUUIDString()}, 400},
		{"ACKNOWLEDGE with a short uuid", encodeCall(t, protobuf, calls.Acknowledge("a", "t", []byte{1}).With(calls.Framework(fwID))), []string{"Content-Type", pb, "Mesos-Stream-Id", sid}, 400},
		{"SUBSCRIBE with a stream id", encodeCall(t, protobuf, calls.Subscribe(frameworkInfo("x"))), []string{"Content-Type", pb, "Accept", pb, "Mesos-Stream-Id", sid}, 400},
		{"SUBSCRIBE accepting neither codec", encodeCall(t, protobuf, calls.Subscribe(frameworkInfo("x"))), []string{"Content-Type", pb, "Accept", "text/html"}, 406},
		{"SUBSCRIBE with mismatched framework ids", encodeCall(t, protobuf, calls.Subscribe(frameworkInfo("x")).With(calls.Framework("other"))), []string{"Content-Type", pb, "Accept", pb}, 400},
	} {
		if got, body := rc.status(url, tc.body, tc.headers...); got != tc.want {
			t.Errorf("%s: status %d (%q), want %d", tc.name, got, body, tc.want)
		}
	}

	// A good call: 202, empty body, no Content-Type.
	resp := rc.post(url, revive, "Content-Type", pb, "Accept", pb, "Mesos-Stream-Id", sid)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || len(b) != 0 || resp.Header.Get("Content-Type") != "" {
		t.Errorf("REVIVE: status %d, body %q, Content-Type %q; want 202, empty, none", resp.StatusCode, b, resp.Header.Get("Content-Type"))
	}

	// Disconnected but within its failover timeout: 403, the one error
	// mesos-go takes as subscription loss.
	m.DropStreams()
	if got, body := rc.status(url, revive, "Content-Type", pb, "Mesos-Stream-Id", sid); got != http.StatusForbidden {
		t.Errorf("after DropStreams: status %d (%q), want 403", got, body)
	}

	// Calls that could not be decoded are recorded without a type.
	var statuses []int
	for _, c := range m.Calls() {
		if c.Type == scheduler.Call_REVIVE {
			statuses = append(statuses, c.Status)
		}
	}
	if want := []int{400, 400, 400, 400, 202, 403}; !equalInts(statuses, want) {
		t.Errorf("recorded REVIVE statuses %v, want %v", statuses, want)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestSubscribeErrorsArriveInTheStream checks that FrameworkInfo problems
// are ERROR events in a 200 stream that then ends, as the real master does.
func TestSubscribeErrorsArriveInTheStream(t *testing.T) {
	checkLeaks(t)
	m := newMaster(t, Config{})
	rc := newRawClient(t)
	info := frameworkInfo("roles without MULTI_ROLE")
	info.Roles = []string{"a"}
	s := rc.subscribe(m.SchedulerURL(), protobuf, info)
	if s.resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200", s.resp.StatusCode)
	}
	e := s.next(t)
	if e.Type != scheduler.Event_ERROR || !strings.Contains(e.Error.Message, "MULTI_ROLE") {
		t.Fatalf("got %v, want ERROR about MULTI_ROLE", e)
	}
	var again scheduler.Event
	if err := s.dec.Decode(&again); err != io.EOF {
		t.Fatalf("after the ERROR: %v, %v; want the stream to end", again.Type, err)
	}
}

// TestStandbyRedirects checks the 307s of a non-leading master and the
// leader's /redirect.
func TestStandbyRedirects(t *testing.T) {
	checkLeaks(t)
	leader := newMaster(t, Config{})
	standby := newMaster(t, Config{Standby: true, LeaderURL: leader.URL()})
	rc := newRawClient(t)
	leaderHP := strings.TrimPrefix(leader.URL(), "http://")

	resp := rc.post(standby.SchedulerURL(), encodeCall(t, protobuf, calls.Subscribe(frameworkInfo("x"))),
		"Content-Type", protobuf.Type.ContentType(), "Accept", protobuf.Type.ContentType())
	resp.Body.Close()
	if resp.StatusCode != http.StatusTemporaryRedirect || resp.Header.Get("Location") != "//"+leaderHP+"/api/v1/scheduler" {
		t.Errorf("standby SUBSCRIBE: %d Location %q, want 307 //%s/api/v1/scheduler", resp.StatusCode, resp.Header.Get("Location"), leaderHP)
	}
	for _, m := range []*Master{leader, standby} {
		r, err := rc.hc.Get(m.URL() + "/redirect")
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != http.StatusTemporaryRedirect || r.Header.Get("Location") != "//"+leaderHP {
			t.Errorf("%s/redirect: %d Location %q, want 307 //%s", m.URL(), r.StatusCode, r.Header.Get("Location"), leaderHP)
		}
	}
	if err := standby.SetLeader(""); err != nil {
		t.Fatal(err)
	}
	if got, _ := rc.status(standby.SchedulerURL(), nil, "Content-Type", protobuf.Type.ContentType()); got != http.StatusServiceUnavailable {
		t.Errorf("standby without a leader: status %d, want 503", got)
	}
	if err := standby.SetLeader(standby.URL()); err != nil {
		t.Fatal(err)
	}
	s := rc.subscribe(standby.SchedulerURL(), protobuf, frameworkInfo("x"))
	if s.resp.StatusCode != http.StatusOK {
		t.Errorf("after SetLeader(own URL): SUBSCRIBE status %d, want 200", s.resp.StatusCode)
	}
}

// TestStateJSON checks the fields of GET /state that tools read.
func TestStateJSON(t *testing.T) {
	checkLeaks(t)
	m := newMaster(t, Config{})
	agentID := addAgent(t, m, AgentSpec{Hostname: "h1", CPUs: 2, MemMB: 1024})
	c := newClient(t, m.SchedulerURL(), protobuf)
	c.subscribe(frameworkInfo("state"))
	c.subscribed()
	o := c.expect(scheduler.Event_OFFERS).Offers.Offers[0]
	c.call(launch(o, commandTask("t1", o, 1, 128)))
	c.update("t1", mesos.TASK_STARTING)

	rc := newRawClient(t)
	resp, err := rc.hc.Get(m.URL() + "/state")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Leader     string `json:"leader"`
		Frameworks []struct {
			ID    string `json:"id"`
			Tasks []struct {
				ID      string `json:"id"`
				State   string `json:"state"`
				SlaveID string `json:"slave_id"`
			} `json:"tasks"`
		} `json:"frameworks"`
		Slaves []struct {
			ID       string `json:"id"`
			Hostname string `json:"hostname"`
			PID      string `json:"pid"`
		} `json:"slaves"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	if len(st.Frameworks) != 1 || st.Frameworks[0].ID != c.frameworkID() ||
		len(st.Frameworks[0].Tasks) != 1 || st.Frameworks[0].Tasks[0].State != "TASK_RUNNING" ||
		st.Frameworks[0].Tasks[0].SlaveID != agentID {
		t.Errorf("frameworks = %+v", st.Frameworks)
	}
	if len(st.Slaves) != 1 || st.Slaves[0].ID != agentID || st.Slaves[0].Hostname != "h1" || st.Slaves[0].PID == "" {
		t.Errorf("slaves = %+v", st.Slaves)
	}
	if !strings.HasPrefix(st.Leader, "master@127.0.0.1:") {
		t.Errorf("leader = %q", st.Leader)
	}
}
