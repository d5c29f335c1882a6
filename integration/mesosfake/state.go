package mesosfake

import (
	"sort"

	"github.com/gogo/protobuf/proto"
	mesos "github.com/mesos/mesos-go/api/v1/lib"
)

// cloneMsg deep-copies a generated message.
func cloneMsg[T any, PT interface {
	*T
	proto.Message
}](m PT) PT {
	if m == nil {
		return nil
	}
	return proto.Clone(m).(PT)
}

// The JSON of GET /state: the fields of the real master's /state that
// frameworks and tools read (frameworks[].id, .tasks, .executors[].{executor_id,
// slave_id}; slaves[].{id, pid, hostname}).
type stateJSON struct {
	Version             string            `json:"version"`
	ID                  string            `json:"id"`
	PID                 string            `json:"pid"`
	Hostname            string            `json:"hostname"`
	Leader              string            `json:"leader"`
	LeaderInfo          *mesos.MasterInfo `json:"leader_info,omitempty"`
	ActivatedSlaves     int               `json:"activated_slaves"`
	DeactivatedSlaves   int               `json:"deactivated_slaves"`
	UnreachableSlaves   int               `json:"unreachable_slaves"`
	Frameworks          []frameworkJSON   `json:"frameworks"`
	CompletedFrameworks []frameworkJSON   `json:"completed_frameworks"`
	Slaves              []slaveJSON       `json:"slaves"`
}

type frameworkJSON struct {
	ID               string             `json:"id"`
	Name             string             `json:"name"`
	User             string             `json:"user"`
	Role             string             `json:"role,omitempty"`
	Roles            []string           `json:"roles"`
	Active           bool               `json:"active"`
	Connected        bool               `json:"connected"`
	Recovered        bool               `json:"recovered"`
	FailoverTimeout  float64            `json:"failover_timeout"`
	Checkpoint       bool               `json:"checkpoint"`
	Capabilities     []string           `json:"capabilities"`
	WebuiURL         string             `json:"webui_url"`
	Tasks            []taskJSON         `json:"tasks"`
	UnreachableTasks []taskJSON         `json:"unreachable_tasks"`
	CompletedTasks   []taskJSON         `json:"completed_tasks"`
	Executors        []executorJSON     `json:"executors"`
	OfferedResources map[string]float64 `json:"offered_resources"`
	UsedResources    map[string]float64 `json:"used_resources"`
}

type taskJSON struct {
	ID          string             `json:"id"`
	Name        string             `json:"name"`
	FrameworkID string             `json:"framework_id"`
	ExecutorID  string             `json:"executor_id"`
	SlaveID     string             `json:"slave_id"`
	State       string             `json:"state"`
	Resources   map[string]float64 `json:"resources"`
}

type executorJSON struct {
	ExecutorID  string `json:"executor_id"`
	ID          string `json:"id"` // not in the real master's JSON; a convenience mirror of executor_id
	Name        string `json:"name"`
	FrameworkID string `json:"framework_id"`
	SlaveID     string `json:"slave_id"`
}

type slaveJSON struct {
	ID               string             `json:"id"`
	PID              string             `json:"pid"`
	Hostname         string             `json:"hostname"`
	Active           bool               `json:"active"`
	Resources        map[string]float64 `json:"resources"`
	UsedResources    map[string]float64 `json:"used_resources"`
	OfferedResources map[string]float64 `json:"offered_resources"`
}

func (m *Master) stateLocked() stateJSON {
	st := stateJSON{
		Version:    m.cfg.Version,
		ID:         m.cfg.ID,
		PID:        m.info.GetPID(),
		Hostname:   m.info.GetHostname(),
		Leader:     m.info.GetPID(),
		LeaderInfo: m.info,
	}
	fwJSON := func(fw *framework) frameworkJSON {
		f := frameworkJSON{
			ID: fw.id, Name: fw.info.GetName(), User: fw.info.GetUser(), Roles: fw.roles(),
			Active: fw.stream != nil, Connected: fw.stream != nil,
			FailoverTimeout: fw.info.GetFailoverTimeout(), Checkpoint: fw.info.GetCheckpoint(),
			WebuiURL: fw.info.GetWebUiURL(), Capabilities: []string{},
			Tasks: []taskJSON{}, UnreachableTasks: []taskJSON{}, CompletedTasks: []taskJSON{},
			Executors: []executorJSON{}, OfferedResources: map[string]float64{}, UsedResources: map[string]float64{},
		}
		if !fw.hasCapability(mesos.FrameworkInfo_Capability_MULTI_ROLE) {
			f.Role = fw.info.GetRole()
		}
		for _, c := range fw.info.GetCapabilities() {
			f.Capabilities = append(f.Capabilities, c.Type.String())
		}
		executors := map[[2]string]bool{}
		for _, t := range m.tasks {
			if t.fw != fw {
				continue
			}
			tj := taskJSON{ID: t.key.task, Name: t.info.Name, FrameworkID: fw.id, SlaveID: t.agent.id,
				State: t.state.String(), Resources: map[string]float64(t.res.clone())}
			if ex := t.info.GetExecutor(); ex != nil {
				tj.ExecutorID = ex.ExecutorID.Value
				k := [2]string{ex.ExecutorID.Value, t.agent.id}
				if !t.completed && !executors[k] {
					executors[k] = true
					f.Executors = append(f.Executors, executorJSON{ExecutorID: k[0], ID: k[0],
						Name: ex.GetName(), FrameworkID: fw.id, SlaveID: k[1]})
				}
			}
			switch {
			case t.completed:
				f.CompletedTasks = append(f.CompletedTasks, tj)
			case t.state == mesos.TASK_UNREACHABLE:
				f.UnreachableTasks = append(f.UnreachableTasks, tj)
			default:
				f.Tasks = append(f.Tasks, tj)
				if !isTerminal(t.state) {
					for k, v := range t.res {
						f.UsedResources[k] = round3(f.UsedResources[k] + v)
					}
				}
			}
		}
		for _, o := range m.offers {
			if o.fw == fw {
				for k, v := range o.res {
					f.OfferedResources[k] = round3(f.OfferedResources[k] + v)
				}
			}
		}
		return f
	}
	st.Frameworks = []frameworkJSON{}
	for _, fw := range m.sortedFrameworksLocked() {
		st.Frameworks = append(st.Frameworks, fwJSON(fw))
	}
	st.CompletedFrameworks = []frameworkJSON{}
	var removed []string
	for id := range m.removed {
		removed = append(removed, id)
	}
	sort.Strings(removed)
	for _, id := range removed {
		st.CompletedFrameworks = append(st.CompletedFrameworks, fwJSON(m.removed[id]))
	}
	st.Slaves = []slaveJSON{}
	for _, a := range m.agentOrder {
		switch a.state {
		case agentUnreachable:
			st.UnreachableSlaves++
			continue
		case agentGone, agentRemoved:
			continue
		}
		st.ActivatedSlaves++
		used, offered := scalars{}, scalars{}
		for _, t := range m.live {
			if t.agent == a && !isTerminal(t.state) {
				used.add(t.res)
			}
		}
		for _, o := range m.offers {
			if o.agent == a {
				offered.add(o.res)
			}
		}
		st.Slaves = append(st.Slaves, slaveJSON{
			ID: a.id, PID: "slave(1)@127.0.0.1:5051", Hostname: a.hostname, Active: true,
			Resources: a.total.clone(), UsedResources: used, OfferedResources: offered,
		})
	}
	return st
}
