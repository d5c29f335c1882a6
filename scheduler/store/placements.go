package store

// Reads and ops of the cluster's layout (cluster.go) for the leader's
// cluster executor: it builds its fenced batches from the ops here, so that
// the paths and the encoding of every record stay in this package. The
// API's listing is Reader.Workers (workers.go).

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/hasched/hasched/coord"
	"github.com/hasched/hasched/scheduler/model"
)

// StoredPlacement is a placement with the version it was read or written
// at: the next change of it names that version.
type StoredPlacement struct {
	model.Placement
	Version coord.Version
}

// StoredReport is one report of a worker incarnation's outbox.
type StoredReport struct {
	// Name is the report's node name (r-{seq}); Path its full path.
	Name, Path string
	model.Report
	Version coord.Version
}

// EncodePlacement is a placement's node value.
func EncodePlacement(p model.Placement) []byte { return encode(p) }

// EncodeRegistration is a worker registration's node value.
func EncodeRegistration(w model.Worker) []byte { return encode(w) }

// MaxReportMessage bounds a report's message (a task's stderr excerpt, a
// fetch error): one report must fit a batch whatever a task printed.
const MaxReportMessage = 4 << 10

// EncodeReport is an outbox report's node value, its message cut to
// MaxReportMessage.
func EncodeReport(r model.Report) []byte {
	if len(r.Message) > MaxReportMessage {
		r.Message = strings.ToValidUTF8(r.Message[:MaxReportMessage], "") + "…"
	}
	return encode(r)
}

// DecodePlacement reads a placement node (ErrUndecodable if it is not one).
func DecodePlacement(n coord.Node) (model.Placement, error) {
	var p model.Placement
	err := decodeNode(n, &p)
	return p, err
}

// CreatePlacementOp creates a placement; its parent, PlacementsPath of the
// worker's name, must exist (EnsurePlacementsParent).
func CreatePlacementOp(p model.Placement) coord.Op {
	return coord.CreateOp(PlacementPath(p.Worker, p.Task.ID), encode(p))
}

// SetPlacementOp replaces a placement read at version.
func SetPlacementOp(p model.Placement, version coord.Version) coord.Op {
	return coord.SetOp(PlacementPath(p.Worker, p.Task.ID), encode(p), version)
}

// DeletePlacementOp removes a placement read at version.
func DeletePlacementOp(worker, task string, version coord.Version) coord.Op {
	return coord.DeleteOp(PlacementPath(worker, task), version)
}

// DeleteReportOp removes a report of an outbox.
func DeleteReportOp(workerID, report string, version coord.Version) coord.Op {
	return coord.DeleteOp(OutboxPath(workerID)+"/"+report, version)
}

// EnsurePlacementsParent makes /placements/{worker} (and /placements) if
// missing, through w: a batch makes no parents.
func EnsurePlacementsParent(ctx context.Context, w coord.Writer, worker string) error {
	if _, err := w.Create(ctx, PlacementsPath(worker), nil); err != nil && !errors.Is(err, coord.ErrExists) {
		return fmt.Errorf("create %s: %w", PlacementsPath(worker), err)
	}
	return nil
}

// Registration reads a worker incarnation's registration, id being
// name~inc; found is false once it is gone. A registration whose content
// is not the incarnation its node names is ErrUndecodable.
func (r Reader) Registration(ctx context.Context, id string) (model.Worker, coord.Version, bool, error) {
	n, err := r.c.Get(ctx, WorkerPath(id))
	if errors.Is(err, coord.ErrNotFound) {
		return model.Worker{}, 0, false, nil
	}
	if err != nil {
		return model.Worker{}, 0, false, unavailable(fmt.Errorf("read %s: %w", WorkerPath(id), err))
	}
	w, err := registrationFrom(n)
	if err != nil {
		return model.Worker{}, 0, false, err
	}
	return w, n.Version, true, nil
}

// registrationFrom decodes and checks a registration node.
func registrationFrom(n coord.Node) (model.Worker, error) {
	var w model.Worker
	if err := decodeNode(n, &w); err != nil {
		return model.Worker{}, err
	}
	if err := w.Check(); err != nil {
		return model.Worker{}, fmt.Errorf("%s: %w: %w", n.Path, ErrUndecodable, err)
	}
	if id := coord.Base(n.Path); w.ID() != id {
		return model.Worker{}, fmt.Errorf("%s: %w: it registers %s", n.Path, ErrUndecodable, w.ID())
	}
	return w, nil
}

// WorkerIDs lists the registered worker incarnations (name~inc), sorted;
// node names that are not worker ids are left out.
func (r Reader) WorkerIDs(ctx context.Context) ([]string, error) {
	names, err := r.children(ctx, WorkersRoot)
	if err != nil {
		return nil, err
	}
	out := names[:0:0]
	for _, n := range names {
		if _, _, err := model.ParseWorkerID(n); err == nil {
			out = append(out, n)
		}
	}
	return out, nil
}

// PlacementWorkers lists the worker names that have a placements node.
func (r Reader) PlacementWorkers(ctx context.Context) ([]string, error) {
	return r.children(ctx, PlacementsRoot)
}

// Placement reads one placement; found is false if it is missing.
func (r Reader) Placement(ctx context.Context, worker, task string) (StoredPlacement, bool, error) {
	n, err := r.c.Get(ctx, PlacementPath(worker, task))
	if errors.Is(err, coord.ErrNotFound) {
		return StoredPlacement{}, false, nil
	}
	if err != nil {
		return StoredPlacement{}, false, unavailable(fmt.Errorf("read %s: %w", PlacementPath(worker, task), err))
	}
	p, err := placementFrom(worker, n)
	return p, err == nil, err
}

// placementFrom decodes a placement node of worker and checks that it
// places the task it is named for on that worker.
func placementFrom(worker string, n coord.Node) (StoredPlacement, error) {
	var p StoredPlacement
	if err := decodeNode(n, &p.Placement); err != nil {
		return StoredPlacement{}, err
	}
	if task := coord.Base(n.Path); p.Worker != worker || p.Task.ID != task {
		return StoredPlacement{}, fmt.Errorf("%s: %w: it places %s on %s", n.Path, ErrUndecodable, p.Task.ID, p.Worker)
	}
	p.Version = n.Version
	return p, nil
}

// PlacementsOf reads every placement on one worker name, by task id, in
// one List. It skips (and names in bad) the nodes that do not decode: one
// damaged node must not hide the others.
func (r Reader) PlacementsOf(ctx context.Context, worker string) (out []StoredPlacement, bad []string, err error) {
	nodes, err := r.nodes(ctx, PlacementsPath(worker))
	if err != nil {
		return nil, nil, err
	}
	for _, n := range nodes {
		p, err := placementFrom(worker, n)
		if err != nil {
			bad = append(bad, err.Error())
			continue
		}
		out = append(out, p)
	}
	return out, bad, nil
}

// OutboxIDs lists the worker incarnations that have an outbox.
func (r Reader) OutboxIDs(ctx context.Context) ([]string, error) {
	return r.children(ctx, OutboxRoot)
}

// ReportNames lists an outbox's reports in the order they were appended
// (their fixed-width counters sort them).
func (r Reader) ReportNames(ctx context.Context, workerID string) ([]string, error) {
	names, err := r.children(ctx, OutboxPath(workerID))
	if err != nil {
		return nil, err
	}
	out := names[:0:0]
	for _, n := range names {
		if strings.HasPrefix(n, ReportPrefix) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out, nil
}

// Report reads one report of an outbox; found is false if it is gone.
func (r Reader) Report(ctx context.Context, workerID, name string) (StoredReport, bool, error) {
	rep := StoredReport{Name: name, Path: OutboxPath(workerID) + "/" + name}
	v, ok, err := r.get(ctx, rep.Path, &rep.Report)
	if err != nil || !ok {
		return StoredReport{}, ok, err
	}
	rep.Version = v
	return rep, true, nil
}

// KillRequested says whether the leader asked for task's kill on worker.
func (r Reader) KillRequested(ctx context.Context, worker, task string) (bool, error) {
	return r.exists(ctx, KillPath(worker, task))
}
