package mesosfake

import (
	"fmt"
	"math"
	"net/http"
	"sort"
	"strings"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
)

// framework is one registered framework (Master::Framework).
type framework struct {
	id            string
	info          *mesos.FrameworkInfo
	stream        *stream // nil while disconnected
	suppressed    map[string]bool
	filters       map[string][]*refuseFilter // by agent id
	failoverTimer *timer
	subscriptions int
	removed       bool
	invalidAcks   int
}

func (fw *framework) hasCapability(t mesos.FrameworkInfo_Capability_Type) bool {
	for _, c := range fw.info.GetCapabilities() {
		if c.Type == t {
			return true
		}
	}
	return false
}

func (fw *framework) partitionAware() bool {
	return fw.hasCapability(mesos.FrameworkInfo_Capability_PARTITION_AWARE)
}

// roles are the roles the framework subscribes to: FrameworkInfo.roles with
// MULTI_ROLE, else FrameworkInfo.role (default "*").
func (fw *framework) roles() []string {
	if fw.hasCapability(mesos.FrameworkInfo_Capability_MULTI_ROLE) {
		return fw.info.GetRoles()
	}
	return []string{fw.info.GetRole()}
}

// offerRole is the role the next offer is allocated to: the first role that
// is not suppressed.
func (fw *framework) offerRole() (string, bool) {
	for _, r := range fw.roles() {
		if !fw.suppressed[r] {
			return r, true
		}
	}
	return "", false
}

func (fw *framework) suppressedAll() bool {
	_, ok := fw.offerRole()
	return !ok
}

// validateFrameworkInfo mirrors the checks whose failure the real master
// reports as an ERROR event in the SUBSCRIBE stream.
func validateFrameworkInfo(info *mesos.FrameworkInfo, suppressedRoles []string) string {
	multiRole := false
	for _, c := range info.GetCapabilities() {
		if c.Type == mesos.FrameworkInfo_Capability_MULTI_ROLE {
			multiRole = true
		}
	}
	if !multiRole && len(info.Roles) > 0 {
		return "'FrameworkInfo.roles' is set but MULTI_ROLE capability is not specified"
	}
	if multiRole && info.Role != nil {
		return "'FrameworkInfo.role' must not be set when MULTI_ROLE capability is specified"
	}
	roles := info.Roles
	if !multiRole {
		roles = []string{info.GetRole()}
	}
	for _, r := range roles {
		if r == "" || r == "." || r == ".." || strings.HasPrefix(r, "-") || strings.ContainsAny(r, " \t\n/\\") {
			return fmt.Sprintf("Invalid role %q", r)
		}
	}
	if ft := info.GetFailoverTimeout(); math.IsNaN(ft) || math.IsInf(ft, 0) || ft < 0 {
		return fmt.Sprintf("Invalid failover_timeout %v", ft)
	}
	for _, s := range suppressedRoles {
		found := false
		for _, r := range roles {
			found = found || r == s
		}
		if !found {
			return fmt.Sprintf("Suppressed role '%s' is not contained in the list of roles", s)
		}
	}
	return ""
}

// subscribeLocked is Master::subscribe/_subscribe for an HTTP framework.
func (m *Master) subscribeLocked(s *stream, call *scheduler.Call) {
	info := cloneMsg(call.Subscribe.FrameworkInfo)
	if msg := validateFrameworkInfo(info, call.Subscribe.SuppressedRoles); msg != "" {
		s.send(errorEvent(msg))
		s.close()
		return
	}
	id := info.GetID().GetValue()
	if _, gone := m.removed[id]; id != "" && gone {
		s.send(errorEvent("Framework has been removed"))
		s.close()
		return
	}
	fw := m.frameworks[id]
	switch {
	case fw == nil && id == "":
		id = fmt.Sprintf("%s-%04d", m.cfg.ID, m.nextFramework)
		m.nextFramework++
		fallthrough
	case fw == nil:
		// An id this master has never seen is accepted as is: after a
		// master failover frameworks re-subscribe with their old ids.
		fw = &framework{id: id, filters: map[string][]*refuseFilter{}}
		m.frameworks[id] = fw
		m.log.Debug("framework added", "framework", id, "name", info.Name)
	default:
		// Failover (Master::failoverFramework): the old connection is told
		// and closed, the timer stops, offers are re-issued.
		if old := fw.stream; old != nil {
			old.send(errorEvent("Framework failed over"))
			m.endStreamLocked(old)
		}
		m.stopTimerLocked(fw.failoverTimer)
		fw.failoverTimer = nil
		m.removeOffersLocked(fw, false)
		m.log.Debug("framework failed over", "framework", id)
	}
	info.ID = &mesos.FrameworkID{Value: id}
	fw.info = info
	fw.suppressed = map[string]bool{}
	for _, r := range call.Subscribe.SuppressedRoles {
		fw.suppressed[r] = true
	}
	fw.stream = s
	s.fw = fw
	fw.subscriptions++

	secs := m.cfg.HeartbeatInterval.Seconds()
	s.send(&scheduler.Event{
		Type: scheduler.Event_SUBSCRIBED,
		Subscribed: &scheduler.Event_Subscribed{
			FrameworkID:              &mesos.FrameworkID{Value: id},
			HeartbeatIntervalSeconds: &secs,
			MasterInfo:               m.info,
		},
	})
	m.heartbeatLocked(s) // the real heartbeater beats once at once
	m.resendPendingLocked(fw)
	m.allocateLocked()
}

// heartbeatLocked sends a HEARTBEAT (unless StopHeartbeats) and schedules the
// next one.
func (m *Master) heartbeatLocked(s *stream) {
	if !m.heartbeatsStopped {
		s.send(&scheduler.Event{Type: scheduler.Event_HEARTBEAT})
	}
	s.hb = m.afterLocked(m.cfg.HeartbeatInterval, func() {
		s.hb = nil
		if s.fw != nil {
			m.heartbeatLocked(s)
		}
	})
}

// endStreamLocked detaches a stream from its framework and ends it once its
// queued events are written.
func (m *Master) endStreamLocked(s *stream) {
	m.stopTimerLocked(s.hb)
	s.hb = nil
	s.fw = nil
	s.close()
}

// streamEnded runs when a SUBSCRIBE handler returns: the client went away,
// the master closed the stream, or the master shut down.
func (m *Master) streamEnded(s *stream) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stopTimerLocked(s.hb)
	s.hb = nil
	fw := s.fw
	if fw == nil || fw.stream != s || m.closed {
		return
	}
	m.disconnectLocked(fw)
	m.notifyLocked()
}

// disconnectLocked is Master::_exited for an HTTP framework: the framework
// is deactivated and its failover timeout starts.
func (m *Master) disconnectLocked(fw *framework) {
	if fw.stream != nil {
		m.endStreamLocked(fw.stream)
		fw.stream = nil
	}
	m.removeOffersLocked(fw, false)
	fw.filters = map[string][]*refuseFilter{} // the allocator drops them on deactivation
	d := m.cfg.FailoverTimeout
	if d <= 0 {
		d = time.Duration(fw.info.GetFailoverTimeout() * float64(time.Second))
	}
	m.log.Debug("framework disconnected", "framework", fw.id, "failover_timeout", d)
	if d <= 0 {
		m.removeFrameworkLocked(fw, "its failover timeout is 0")
		return
	}
	fw.failoverTimer = m.afterLocked(d, func() {
		fw.failoverTimer = nil
		if fw.stream == nil && !fw.removed {
			m.removeFrameworkLocked(fw, "its failover timeout expired")
		}
	})
	m.allocateLocked()
}

// removeFrameworkLocked is Master::removeFramework: the framework's stream
// ends, its offers go back, its live tasks are killed (TASK_KILLED,
// REASON_FRAMEWORK_REMOVED, seen by nobody) and later SUBSCRIBEs with its id
// are refused.
func (m *Master) removeFrameworkLocked(fw *framework, why string) {
	m.log.Debug("framework removed", "framework", fw.id, "why", why)
	if fw.stream != nil {
		m.endStreamLocked(fw.stream)
		fw.stream = nil
	}
	m.stopTimerLocked(fw.failoverTimer)
	fw.failoverTimer = nil
	m.removeOffersLocked(fw, false)
	for _, t := range m.liveTasksLocked(fw) {
		if !isTerminal(t.state) {
			st := m.newStatus(t, mesos.TASK_KILLED, mesos.SOURCE_MASTER,
				mesos.REASON_FRAMEWORK_REMOVED.Enum(), "Framework "+fw.id+" removed")
			t.setLatest(st)
		}
		m.completeTaskLocked(t)
	}
	fw.removed = true
	delete(m.frameworks, fw.id)
	m.removed[fw.id] = fw
	m.allocateLocked()
}

// handleCallLocked dispatches every call but SUBSCRIBE and returns the HTTP
// status and error text.
func (m *Master) handleCallLocked(call *scheduler.Call, streamID string) (int, string) {
	fwID := call.GetFrameworkID().GetValue()
	fw := m.frameworks[fwID]
	switch {
	case fw == nil:
		return http.StatusBadRequest, "Framework cannot be found"
	case fw.stream == nil:
		return http.StatusForbidden, "Framework is not subscribed"
	case streamID == "":
		return http.StatusBadRequest, "All non-subscribe calls should include the 'Mesos-Stream-Id' header"
	case streamID != fw.stream.id:
		return http.StatusBadRequest, "The stream ID '" + streamID + "' included in this request " +
			"didn't match the stream ID currently associated with framework ID " + fwID
	}
	switch call.Type {
	case scheduler.Call_TEARDOWN:
		m.removeFrameworkLocked(fw, "TEARDOWN")
	case scheduler.Call_ACCEPT:
		m.acceptLocked(fw, call.Accept)
	case scheduler.Call_DECLINE:
		m.declineLocked(fw, call.Decline.OfferIDs, call.Decline.Filters)
	case scheduler.Call_REVIVE:
		m.reviveLocked(fw, call.GetRevive().GetRoles())
	case scheduler.Call_SUPPRESS:
		m.suppressLocked(fw, call.GetSuppress().GetRoles())
	case scheduler.Call_KILL:
		m.killLocked(fw, call.Kill)
	case scheduler.Call_ACKNOWLEDGE:
		m.acknowledgeLocked(fw, call.Acknowledge)
	case scheduler.Call_RECONCILE:
		m.reconcileLocked(fw, call.Reconcile.Tasks)
	case scheduler.Call_SHUTDOWN, scheduler.Call_MESSAGE, scheduler.Call_REQUEST,
		scheduler.Call_ACCEPT_INVERSE_OFFERS, scheduler.Call_DECLINE_INVERSE_OFFERS,
		scheduler.Call_ACKNOWLEDGE_OPERATION_STATUS, scheduler.Call_RECONCILE_OPERATIONS,
		scheduler.Call_UPDATE_FRAMEWORK:
		m.log.Debug("call accepted but not simulated", "type", call.Type, "framework", fwID)
	default:
		return http.StatusNotImplemented, "Unsupported call type " + call.Type.String()
	}
	return http.StatusAccepted, ""
}

// reviveLocked removes the framework's filters and unsuppresses the roles
// (all of them if none are named).
func (m *Master) reviveLocked(fw *framework, roles []string) {
	if len(roles) == 0 {
		roles = fw.roles()
	}
	for _, r := range roles {
		delete(fw.suppressed, r)
	}
	fw.filters = map[string][]*refuseFilter{}
	m.allocateLocked()
}

// suppressLocked stops offers for the roles (all if none are named);
// outstanding offers stay valid, as with the real allocator.
func (m *Master) suppressLocked(fw *framework, roles []string) {
	if len(roles) == 0 {
		roles = fw.roles()
	}
	for _, r := range roles {
		fw.suppressed[r] = true
	}
}

func (m *Master) sortedFrameworksLocked() []*framework {
	out := make([]*framework, 0, len(m.frameworks))
	for _, fw := range m.frameworks {
		out = append(out, fw)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

func errorEvent(msg string) *scheduler.Event {
	return &scheduler.Event{Type: scheduler.Event_ERROR, Error: &scheduler.Event_Error{Message: msg}}
}
