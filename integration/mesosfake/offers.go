package mesosfake

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
)

// scalars are amounts of scalar resources by name (cpus, mem, disk), in the
// real master's fixed-point precision of three decimals.
type scalars map[string]float64

func (s scalars) clone() scalars {
	out := make(scalars, len(s))
	for k, v := range s {
		out[k] = v
	}
	return out
}

func (s scalars) add(o scalars) {
	for k, v := range o {
		s[k] = round3(s[k] + v)
	}
}

func (s scalars) sub(o scalars) {
	for k, v := range o {
		s[k] = round3(s[k] - v)
	}
}

// contains reports whether o fits in s.
func (s scalars) contains(o scalars) bool {
	for k, v := range o {
		if v > 0 && round3(v) > s[k] {
			return false
		}
	}
	return true
}

// allocatable is the allocator's minimum: 0.01 cpus or 32 MB of memory.
func (s scalars) allocatable() bool { return s["cpus"] >= 0.01 || s["mem"] >= 32 }

func (s scalars) names() []string {
	var out []string
	for k, v := range s {
		if v > 0 {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// resources are s as offered to a framework of role: unreserved ("*") with
// the allocation's role, as the master sends them to frameworks without
// RESERVATION_REFINEMENT.
func (s scalars) resources(role string) []mesos.Resource {
	var out []mesos.Resource
	for _, k := range s.names() {
		out = append(out, mesos.Resource{
			Name:           k,
			Type:           mesos.SCALAR.Enum(),
			Scalar:         &mesos.Value_Scalar{Value: s[k]},
			Role:           strPtr("*"),
			AllocationInfo: &mesos.Resource_AllocationInfo{Role: strPtr(role)},
		})
	}
	return out
}

func (s scalars) String() string {
	var parts []string
	for _, k := range s.names() {
		parts = append(parts, k+":"+strconv.FormatFloat(s[k], 'f', -1, 64))
	}
	if len(parts) == 0 {
		return "{}"
	}
	return strings.Join(parts, "; ")
}

func round3(x float64) float64 { return math.Round(x*1000) / 1000 }

type agentState int

const (
	agentActive      agentState = iota
	agentUnreachable            // lost: health checks failed
	agentGone                   // marked gone by the operator
	agentRemoved                // shut down or unregistered: the master forgets it
)

func (s agentState) String() string {
	return [...]string{"active", "unreachable", "gone", "removed"}[s]
}

// agent is a simulated agent: resources and a state; the tasks on it live in
// Master.tasks.
type agent struct {
	id            string
	hostname      string
	total         scalars
	state         agentState
	unreachableAt time.Time
}

type offer struct {
	id    string
	fw    *framework
	agent *agent
	role  string
	res   scalars
}

func (o *offer) proto() mesos.Offer {
	return mesos.Offer{
		ID:          mesos.OfferID{Value: o.id},
		FrameworkID: mesos.FrameworkID{Value: o.fw.id},
		AgentID:     mesos.AgentID{Value: o.agent.id},
		Hostname:    o.agent.hostname,
		URL: &mesos.URL{
			Scheme:  "http",
			Address: mesos.Address{Hostname: strPtr(o.agent.hostname), IP: strPtr("127.0.0.1"), Port: 5051},
			Path:    strPtr("/slave(1)"),
		},
		Resources:      o.res.resources(o.role),
		AllocationInfo: &mesos.Resource_AllocationInfo{Role: strPtr(o.role)},
	}
}

// refuseFilter is the allocator's RefusedOfferFilter: offers of the agent to
// the framework that the refused resources contain are withheld until.
type refuseFilter struct {
	refused scalars
	until   time.Time
}

// availableLocked is what an agent can still offer: total minus the
// resources of its non-terminal tasks and of its outstanding offers.
func (m *Master) availableLocked(a *agent) scalars {
	avail := a.total.clone()
	for _, t := range m.live {
		if t.agent == a && !isTerminal(t.state) {
			avail.sub(t.res)
		}
	}
	for _, o := range m.offers {
		if o.agent == a {
			avail.sub(o.res)
		}
	}
	return avail
}

// allocateLocked offers every active agent's available resources to the
// connected, unsuppressed frameworks that do not filter them, one OFFERS
// event per framework. It runs after every change that may free resources or
// make a framework eligible, instead of the real allocator's 1s batches.
func (m *Master) allocateLocked() {
	if m.closed || m.standby {
		return
	}
	var fws []*framework
	for _, fw := range m.sortedFrameworksLocked() {
		if _, ok := fw.offerRole(); ok && fw.stream != nil {
			fws = append(fws, fw)
		}
	}
	if len(fws) == 0 {
		return
	}
	now := m.clock.Now()
	batches := map[*framework][]mesos.Offer{}
	for i, a := range m.agentOrder {
		if a.state != agentActive {
			continue
		}
		avail := m.availableLocked(a)
		if !avail.allocatable() {
			continue
		}
		for j := range fws {
			fw := fws[(i+j)%len(fws)]
			if m.filteredLocked(fw, a, avail, now) {
				continue
			}
			role, _ := fw.offerRole()
			o := &offer{id: fmt.Sprintf("%s-O%d", m.cfg.ID, m.nextOffer), fw: fw, agent: a, role: role, res: avail}
			m.nextOffer++
			m.offers[o.id] = o
			batches[fw] = append(batches[fw], o.proto())
			break
		}
	}
	for _, fw := range fws {
		if offers := batches[fw]; len(offers) > 0 {
			fw.stream.send(&scheduler.Event{Type: scheduler.Event_OFFERS, Offers: &scheduler.Event_Offers{Offers: offers}})
		}
	}
}

func (m *Master) filteredLocked(fw *framework, a *agent, avail scalars, now time.Time) bool {
	filters := fw.filters[a.id]
	kept := filters[:0]
	filtered := false
	for _, f := range filters {
		if !now.Before(f.until) {
			continue
		}
		kept = append(kept, f)
		filtered = filtered || f.refused.contains(avail)
	}
	if len(kept) == 0 {
		delete(fw.filters, a.id)
	} else {
		fw.filters[a.id] = kept
	}
	return filtered
}

// installFilterLocked is the allocator's recoverResources with filters:
// refused resources are withheld from fw for refuseSeconds.
func (m *Master) installFilterLocked(fw *framework, a *agent, refused scalars, refuseSeconds float64) {
	if refuseSeconds <= 0 || math.IsNaN(refuseSeconds) || len(refused.names()) == 0 {
		return
	}
	d := time.Duration(refuseSeconds * float64(time.Second))
	if math.IsInf(refuseSeconds, 1) || refuseSeconds > (365*24*time.Hour).Seconds() {
		d = 365 * 24 * time.Hour
	}
	fw.filters[a.id] = append(fw.filters[a.id], &refuseFilter{refused: refused.clone(), until: m.clock.Now().Add(d)})
	m.afterLocked(d, m.allocateLocked) // the filter expires: offer again
}

// removeOfferLocked withdraws an offer; its resources return to the agent.
func (m *Master) removeOfferLocked(o *offer, rescind bool) {
	delete(m.offers, o.id)
	if rescind && o.fw.stream != nil {
		o.fw.stream.send(&scheduler.Event{
			Type:    scheduler.Event_RESCIND,
			Rescind: &scheduler.Event_Rescind{OfferID: mesos.OfferID{Value: o.id}},
		})
	}
}

func (m *Master) removeOffersLocked(fw *framework, rescind bool) {
	for _, o := range m.sortedOffersLocked() {
		if o.fw == fw {
			m.removeOfferLocked(o, rescind)
		}
	}
}

func (m *Master) sortedOffersLocked() []*offer {
	out := make([]*offer, 0, len(m.offers))
	for _, o := range m.offers {
		out = append(out, o)
	}
	sort.Slice(out, func(i, j int) bool { return offerSeq(out[i].id) < offerSeq(out[j].id) })
	return out
}

func offerSeq(id string) int {
	i := strings.LastIndex(id, "-O")
	n, _ := strconv.Atoi(id[i+2:])
	return n
}

// declineLocked returns the offers with a refuse filter (default 5s).
func (m *Master) declineLocked(fw *framework, ids []mesos.OfferID, filters *mesos.Filters) {
	refuse := filters.GetRefuseSeconds()
	for _, id := range ids {
		o := m.offers[id.Value]
		if o == nil || o.fw != fw {
			continue // the real master ignores unknown offers in DECLINE
		}
		m.removeOfferLocked(o, false)
		m.installFilterLocked(fw, o.agent, o.res, refuse)
	}
	m.allocateLocked()
}

// acceptLocked is Master::accept for LAUNCH operations.
func (m *Master) acceptLocked(fw *framework, acc *scheduler.Call_Accept) {
	offers, valid, errMsg := m.validateOffersLocked(fw, acc.OfferIDs)
	if errMsg != "" {
		// Invalid offers: no HTTP error; every task to be launched is
		// dropped (lost for frameworks that are not partition-aware), and
		// the valid offers go back without a filter.
		for _, op := range acc.Operations {
			for _, ti := range operationTasks(op) {
				st := m.masterStatus(ti.TaskID.Value, ti.AgentID.Value, mesos.TASK_DROPPED,
					mesos.REASON_INVALID_OFFERS, "Task launched with invalid offers: "+errMsg)
				m.sendUpdateLocked(fw, st)
			}
		}
		for _, o := range valid {
			m.removeOfferLocked(o, false)
		}
		m.allocateLocked()
		return
	}
	a, role := offers[0].agent, offers[0].role
	avail := scalars{}
	for _, o := range offers {
		avail.add(o.res)
		delete(m.offers, o.id)
	}
	seen := map[string]bool{}
	for _, op := range acc.Operations {
		switch op.Type {
		case mesos.Offer_Operation_LAUNCH:
			for i := range op.GetLaunch().GetTaskInfos() {
				ti := &op.Launch.TaskInfos[i]
				need, msg := m.validateTaskLocked(fw, a, role, ti, avail, seen)
				if msg != "" {
					st := m.masterStatus(ti.TaskID.Value, ti.AgentID.Value, mesos.TASK_ERROR,
						mesos.REASON_TASK_INVALID, msg)
					m.sendUpdateLocked(fw, st)
					continue
				}
				seen[ti.TaskID.Value] = true
				avail.sub(need)
				m.launchLocked(fw, a, ti, need)
			}
		case mesos.Offer_Operation_LAUNCH_GROUP:
			for _, ti := range operationTasks(op) {
				st := m.masterStatus(ti.TaskID.Value, ti.AgentID.Value, mesos.TASK_ERROR,
					mesos.REASON_TASK_INVALID, "mesosfake does not simulate LAUNCH_GROUP")
				m.sendUpdateLocked(fw, st)
			}
		default:
			m.log.Debug("offer operation ignored", "type", op.Type, "framework", fw.id)
		}
	}
	m.installFilterLocked(fw, a, avail, acc.GetFilters().GetRefuseSeconds())
	m.allocateLocked()
}

func operationTasks(op mesos.Offer_Operation) []mesos.TaskInfo {
	switch op.Type {
	case mesos.Offer_Operation_LAUNCH:
		return op.GetLaunch().GetTaskInfos()
	case mesos.Offer_Operation_LAUNCH_GROUP:
		return op.GetLaunchGroup().GetTaskGroup().Tasks
	}
	return nil
}

// validateOffersLocked is validation::offer::validate. offers are all the
// offers named (when valid); valid are the named offers that exist and
// belong to fw.
func (m *Master) validateOffersLocked(fw *framework, ids []mesos.OfferID) (offers, valid []*offer, errMsg string) {
	fail := func(msg string) {
		if errMsg == "" {
			errMsg = msg
		}
	}
	if len(ids) == 0 {
		fail("No offers specified")
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id.Value] {
			fail("Duplicate offer " + id.Value + " in ACCEPT")
			continue
		}
		seen[id.Value] = true
		o := m.offers[id.Value]
		switch {
		case o == nil:
			fail("Offer " + id.Value + " is no longer valid")
			continue
		case o.fw != fw:
			fail("Offer " + id.Value + " has invalid framework")
			continue
		}
		valid = append(valid, o)
		if len(offers) > 0 && offers[0].agent != o.agent {
			fail("Aggregated offers must belong to one single agent")
		}
		if len(offers) > 0 && offers[0].role != o.role {
			fail("Aggregated offers must be allocated to the same role")
		}
		offers = append(offers, o)
	}
	return offers, valid, errMsg
}

// validateTaskLocked is validation::task::validate with the checks that
// matter here; it returns the task's (and its executor's) scalar resources.
func (m *Master) validateTaskLocked(fw *framework, a *agent, role string, ti *mesos.TaskInfo, avail scalars, seen map[string]bool) (scalars, string) {
	id := ti.TaskID.Value
	switch {
	case id == "":
		return nil, "Task ID must not be empty"
	case id == "." || id == ".." || strings.ContainsAny(id, "/\x00") || strings.TrimSpace(id) != id:
		return nil, "Task ID '" + id + "' contains invalid characters"
	case seen[id] || m.live[taskKey{fw.id, id}] != nil:
		return nil, "Task has duplicate ID: " + id
	case ti.AgentID.Value != a.id:
		return nil, "Task uses invalid agent: " + ti.AgentID.Value
	case (ti.Command == nil) == (ti.Executor == nil):
		return nil, "Task should have at least one (but not both) of CommandInfo or ExecutorInfo present"
	}
	resources := ti.Resources
	if ti.Executor != nil {
		resources = append(append([]mesos.Resource(nil), resources...), ti.Executor.Resources...)
	}
	need := scalars{}
	for _, r := range resources {
		switch {
		case r.GetType() != mesos.SCALAR || r.Scalar == nil:
			return nil, "Resource '" + r.Name + "' is not a scalar: mesosfake offers only scalar resources"
		case r.GetRole() != "*" || len(r.Reservations) > 0 || r.Reservation != nil:
			return nil, "Task uses reserved resource '" + r.Name + "'; mesosfake offers only unreserved resources"
		case r.AllocationInfo != nil && r.AllocationInfo.GetRole() != role:
			return nil, fmt.Sprintf("Task uses resource '%s' allocated to role '%s' but the offers are allocated to '%s'",
				r.Name, r.AllocationInfo.GetRole(), role)
		case r.Scalar.Value < 0 || math.IsNaN(r.Scalar.Value):
			return nil, "Resource '" + r.Name + "' has an invalid value"
		}
		need[r.Name] = round3(need[r.Name] + r.Scalar.Value)
	}
	if !avail.contains(need) {
		return nil, fmt.Sprintf("Task uses more resources %s than available %s", need, avail)
	}
	return need, ""
}
