package store

import "fmt"

// The cluster's layout: workers, placements, kill requests and the workers'
// outboxes. It is the protocol between the leader's cluster executor
// (package scheduler/executor/cluster) and every process's worker (package
// scheduler/worker):
//
//	/workers/{name~inc}              ephemeral, the worker's own session:
//	                                 model.Worker. Present exactly while the
//	                                 incarnation's session lives on the
//	                                 server. Written only by the worker.
//	/placements/{name}/{task}        model.Placement. Created by the leader
//	                                 (fenced by its term); re-bound to a new
//	                                 incarnation by the restarted worker
//	                                 (fenced by its registration, versioned);
//	                                 the worker's reports folded in and
//	                                 LOST marked by the leader (fenced,
//	                                 versioned). Removed by the leader a
//	                                 retention after it ended.
//	/kills/{name}/{task}             empty; the leader asks the worker to
//	                                 kill the task (fenced by its term).
//	/outbox/{name~inc}/r-{seq}       model.Report, sequential; appended by
//	                                 the worker in the order of its task
//	                                 statuses, each append fenced by its
//	                                 registration (a batch that also Sets
//	                                 /workers/{name~inc} at its version), so
//	                                 nothing an expired incarnation reports
//	                                 is written. The leader folds each into
//	                                 its placement and deletes it, in one
//	                                 fenced batch.
//
// Placements are grouped by worker name, not incarnation, so that a
// restarted worker finds what its predecessor ran by listing one node.
const (
	WorkersRoot    = "/workers"
	PlacementsRoot = "/placements"
	KillsRoot      = "/kills"
	OutboxRoot     = "/outbox"
	// ReportPrefix names the outbox's sequential nodes.
	ReportPrefix = "r-"
)

// WorkerPath is a worker incarnation's registration, id being name~inc.
func WorkerPath(id string) string { return WorkersRoot + "/" + id }

// PlacementsPath holds the placements on one worker name.
func PlacementsPath(worker string) string { return PlacementsRoot + "/" + worker }

// PlacementPath is one task's placement on worker (a name).
func PlacementPath(worker, task string) string { return PlacementsRoot + "/" + worker + "/" + task }

// KillsPath holds the kill requests of one worker name.
func KillsPath(worker string) string { return KillsRoot + "/" + worker }

// KillPath asks worker (a name) to kill task.
func KillPath(worker, task string) string { return KillsRoot + "/" + worker + "/" + task }

// OutboxPath is a worker incarnation's outbox, id being name~inc.
func OutboxPath(id string) string { return OutboxRoot + "/" + id }

// ReportPath is report seq of incarnation id's outbox: zero-padded, so
// that the names sort in the order written.
func ReportPath(id string, seq uint64) string {
	return fmt.Sprintf("%s/%s%020d", OutboxPath(id), ReportPrefix, seq)
}
