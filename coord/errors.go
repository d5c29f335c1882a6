package coord

import "errors"

// Errors returned by every backend; match them with errors.Is. Backends wrap
// them with the operation and path.
var (
	ErrNotFound           = errors.New("coord: node not found")
	ErrExists             = errors.New("coord: node already exists")
	ErrVersionConflict    = errors.New("coord: version conflict")
	ErrNotEmpty           = errors.New("coord: node has children")
	ErrInvalidPath        = errors.New("coord: invalid path")
	ErrEphemeralParent    = errors.New("coord: ephemeral nodes cannot have children")
	ErrValueTooLarge      = errors.New("coord: value too large")
	ErrNoLeader           = errors.New("coord: election has no leader")
	ErrNotLeader          = errors.New("coord: not the leader")
	ErrAlreadyCampaigning = errors.New("coord: already campaigning in this election")
	ErrSessionLost        = errors.New("coord: session lost")
	ErrClosed             = errors.New("coord: coordinator closed")
	ErrUnsupportedURL     = errors.New("coord: unsupported coordinator URL")
	ErrBatchTooLarge      = errors.New("coord: batch too large")
)
