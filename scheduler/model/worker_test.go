package model

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestWorkerCheck(t *testing.T) {
	good := Worker{Name: "host-1.example", Incarnation: "0123456789abcdef", CPUs: 2, MemoryMB: 1024, Labels: map[string]string{"zone": "a"}}
	if err := good.Check(); err != nil {
		t.Fatalf("Check of a good registration: %v", err)
	}
	name, inc, err := ParseWorkerID(good.ID())
	if err != nil || name != good.Name || inc != good.Incarnation {
		t.Fatalf("ParseWorkerID(%q) = %q, %q, %v", good.ID(), name, inc, err)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*Worker)
		bound  bool
	}{
		{"empty name", func(w *Worker) { w.Name = "" }, false},
		{"slash in name", func(w *Worker) { w.Name = "a/b" }, false},
		{"separator in name", func(w *Worker) { w.Name = "a~b" }, false},
		{"long name", func(w *Worker) { w.Name = strings.Repeat("a", 64) }, false},
		{"short incarnation", func(w *Worker) { w.Incarnation = "abc" }, false},
		{"upper-case incarnation", func(w *Worker) { w.Incarnation = "0123456789ABCDEF" }, false},
		{"no cpus", func(w *Worker) { w.CPUs = 0 }, true},
		{"NaN cpus", func(w *Worker) { w.CPUs = nan() }, true},
		{"too many cpus", func(w *Worker) { w.CPUs = MaxWorkerCPUs + 1 }, true},
		{"negative memory", func(w *Worker) { w.MemoryMB = -1 }, true},
		{"too much memory", func(w *Worker) { w.MemoryMB = MaxWorkerMemoryMB + 1 }, true},
		{"bad label", func(w *Worker) { w.Labels = map[string]string{"zone": "a=b"} }, false},
		{"too many labels", func(w *Worker) {
			w.Labels = map[string]string{}
			for i := range MaxLabels + 1 {
				w.Labels[fmt.Sprint("k", i)] = "v"
			}
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := good
			tc.mutate(&w)
			err := w.Check()
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Check = %v, want ErrInvalid", err)
			}
			if errors.Is(err, ErrOutOfBounds) != tc.bound {
				t.Fatalf("Check = %v: ErrOutOfBounds %v, want %v", err, !tc.bound, tc.bound)
			}
		})
	}
	for _, id := range []string{"", "host", "host~", "~0123456789abcdef", "host~0123456789abcdeg", "a/b~0123456789abcdef"} {
		if _, _, err := ParseWorkerID(id); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseWorkerID(%q) = %v, want ErrInvalid", id, err)
		}
	}
}

func nan() float64 {
	var zero float64
	return zero / zero
}

func TestLabels(t *testing.T) {
	got, err := ParseLabels("labels", " zone=a, rack=r1 ")
	if err != nil || len(got) != 2 || got["zone"] != "a" || got["rack"] != "r1" {
		t.Fatalf("ParseLabels = %v, %v", got, err)
	}
	if s := FormatLabels(got); s != "rack=r1,zone=a" {
		t.Fatalf("FormatLabels = %q", s)
	}
	if got, err := ParseLabels("labels", ""); err != nil || len(got) != 0 {
		t.Fatalf("ParseLabels of nothing = %v, %v", got, err)
	}
	for _, bad := range []string{"zone", "zone=a,zone=b", "=a", "zone=", "zone=a b", "k=" + strings.Repeat("v", 64)} {
		if _, err := ParseLabels("labels", bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseLabels(%q) = %v, want ErrInvalid", bad, err)
		}
	}
	labels := map[string]string{"zone": "a", "rack": "r1"}
	for _, tc := range []struct {
		constraints map[string]string
		want        bool
	}{
		{nil, true},
		{map[string]string{"zone": "a"}, true},
		{map[string]string{"zone": "a", "rack": "r1"}, true},
		{map[string]string{"zone": "b"}, false},
		{map[string]string{"gpu": "yes"}, false},
	} {
		if got := Matches(labels, tc.constraints); got != tc.want {
			t.Errorf("Matches(%v, %v) = %v, want %v", labels, tc.constraints, got, tc.want)
		}
	}
}
