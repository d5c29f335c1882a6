package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode/utf8"
)

// Units of a Row's figures.
const (
	UnitPerSecond = "/s"
	UnitMillis    = "ms"
)

// Row keys, stable for scripts reading --json.
const (
	RowRegister    = "register"
	RowListLeader  = "list-leader"
	RowListStandby = "list-standby"
	RowTakeover    = "takeover"
	RowLagP50      = "lag-p50"
	RowLagP99      = "lag-p99"
	RowLaunchRate  = "launches"
)

// Row is one figure: hasched's, and the raw client's where one exists.
type Row struct {
	Key     string  `json:"key"`
	Figure  string  `json:"figure"`
	Unit    string  `json:"unit"`
	Hasched float64 `json:"hasched"`
	// Raw is the raw client's figure, nil where it has none.
	Raw       *float64 `json:"raw,omitempty"`
	RawMethod string   `json:"rawMethod,omitempty"`
}

// Ratio is hasched's cost over the raw client's (time per operation: for a
// rate, raw/hasched; for a time, hasched/raw), or NaN without a raw figure.
func (r Row) Ratio() float64 {
	if r.Raw == nil || *r.Raw == 0 || r.Hasched == 0 {
		return math.NaN()
	}
	if r.Unit == UnitPerSecond {
		return *r.Raw / r.Hasched
	}
	return r.Hasched / *r.Raw
}

// Report is what Run measured.
type Report struct {
	Coordinator string  `json:"coordinator"` // without credentials
	Backend     string  `json:"backend"`     // etcd or zk
	Namespace   string  `json:"namespace"`   // the bench's own, removed at the end
	Jobs        int     `json:"jobs"`
	Concurrency int     `json:"concurrency"`
	FireJobs    int     `json:"fireJobs"`
	DurationSec float64 `json:"durationSeconds"`
	// NodeBytes is the size of one stored job configuration, the size of
	// the raw client's nodes.
	NodeBytes int   `json:"nodeBytes"`
	Rows      []Row `json:"rows"`
	// Notes say what a reader must know to read the figures.
	Notes []string `json:"notes,omitempty"`
	// NamespaceRemoved says the namespace was found empty at the end.
	NamespaceRemoved bool `json:"namespaceRemoved"`
}

// Row returns the row with key, if there is one.
func (r Report) Row(key string) (Row, bool) {
	for _, row := range r.Rows {
		if row.Key == key {
			return row, true
		}
	}
	return Row{}, false
}

// WriteJSON writes the report as indented JSON.
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes the report as a plain table, with the raw clients'
// methods and the notes below it.
func (r Report) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "hasched bench on %s (namespace %s, removed: %s)\n", r.Coordinator, r.Namespace, yesNo(r.NamespaceRemoved))
	fmt.Fprintf(w, "%s jobs of %d bytes, %d clients; %s jobs firing every second for %ss\n\n",
		thousands(int64(r.Jobs)), r.NodeBytes, r.Concurrency, thousands(int64(r.FireJobs)), strconv.FormatFloat(r.DurationSec, 'f', -1, 64))
	// Figures left-aligned, numbers right-aligned: the figure cells are
	// padded to one width before the right-aligning writer sees them.
	width := len("figure")
	for _, row := range r.Rows {
		width = max(width, utf8.RuneCountInString(row.Figure))
	}
	pad := func(s string) string { return s + strings.Repeat(" ", width-utf8.RuneCountInString(s)) }
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%s\thasched\traw client\tratio\t\n", pad("figure"))
	var methods []string
	for _, row := range r.Rows {
		raw, ratio := "—", "—"
		if row.Raw != nil {
			raw = formatFigure(*row.Raw, row.Unit)
			ratio = strconv.FormatFloat(row.Ratio(), 'f', 2, 64)
			methods = appendOnce(methods, row.RawMethod)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", pad(row.Figure), formatFigure(row.Hasched, row.Unit), raw, ratio)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nratio: hasched's time per operation over the raw client's.")
	if len(methods) > 0 {
		fmt.Fprintf(w, "raw client: %s.\n", strings.Join(methods, "; "))
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	return nil
}

// formatFigure prints rates as whole numbers and times in ms with three
// significant digits at most.
func formatFigure(v float64, unit string) string {
	switch unit {
	case UnitPerSecond:
		return thousands(int64(math.Round(v))) + "/s"
	case UnitMillis:
		switch {
		case v >= 100:
			return thousands(int64(math.Round(v))) + " ms"
		case v >= 10:
			return strconv.FormatFloat(v, 'f', 1, 64) + " ms"
		default:
			return strconv.FormatFloat(v, 'f', 2, 64) + " ms"
		}
	}
	return strconv.FormatFloat(v, 'g', 4, 64) + " " + unit
}

func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	if n < 0 {
		return "-" + thousands(-n)
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func appendOnce(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}
