package model

import (
	"fmt"
	"regexp"
)

const (
	// MaxAlertReceivers bounds a job's alertReceivers: each name is one
	// more delivery per failure.
	MaxAlertReceivers = 8
	// MaxAlertReceiverName bounds a receiver's name.
	MaxAlertReceiverName = 63
)

// alertReceiverRE: a receiver's name is a word an operator writes in a
// file and reads in a log line.
var alertReceiverRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$`)

// CheckAlertReceiverName refuses a name that is not 1 to
// MaxAlertReceiverName letters, digits, '.', '_' or '-', starting and
// ending with a letter or digit. The alerts file's receivers are named by
// the same rule, so that every name a job can give is one a file can
// define.
func CheckAlertReceiverName(field, name string) error {
	if len(name) > MaxAlertReceiverName || !alertReceiverRE.MatchString(name) {
		return &ValidationError{Field: field, Reason: fmt.Sprintf("%q: a receiver's name is 1 to %d letters, digits, '.', '_' or '-', starting and ending with a letter or digit", name, MaxAlertReceiverName)}
	}
	return nil
}

// CheckAlertReceivers checks a job's alertReceivers: at most
// MaxAlertReceivers valid names, none twice. Whether this process's alerts
// file defines them is not checked: that is the process's configuration,
// not the job's, and differs between processes.
func CheckAlertReceivers(field string, names []string) error {
	if len(names) > MaxAlertReceivers {
		return &ValidationError{Field: field, Reason: fmt.Sprintf("%d receivers: at most %d", len(names), MaxAlertReceivers), Err: ErrOutOfBounds}
	}
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		if err := CheckAlertReceiverName(field, n); err != nil {
			return err
		}
		if seen[n] {
			return &ValidationError{Field: field, Reason: fmt.Sprintf("%q is given twice", n)}
		}
		seen[n] = true
	}
	return nil
}
