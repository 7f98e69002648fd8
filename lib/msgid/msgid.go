// Package msgid is the 16-octet identifier IM2000 gives every message and
// every recipient of a message (DESIGN.md section 3). On disk and on the
// command line it is written as 32 lowercase hex digits.
package msgid

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
)

// Size is the length of an identifier in octets.
const Size = 16

// ID is a message, recipient or list identifier.
type ID [Size]byte

// New returns a fresh identifier from crypto/rand. Identifiers of recipients
// and lists are capabilities, so they must be unguessable: never derive one
// from anything public. The store derives recipient ids from the message
// id only under a secret key of its own (AES-256 of the id's first 12
// octets and the recipient's index: lib/store/rid.go), which keeps them as
// unguessable as these: without the key they are indistinguishable from
// random, and the store accepts only the ones its envelopes list.
func New() ID {
	var id ID
	// crypto/rand.Read never returns an error on Linux (Go 1.24+ panics
	// rather than return short reads), so there is nothing to handle.
	rand.Read(id[:])
	return id
}

// String returns the 32 lowercase hex digits that name the identifier's files.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// ErrSyntax is returned for anything that is not exactly 32 lowercase hex digits.
var ErrSyntax = errors.New("message id must be 32 lowercase hex digits")

// Parse reads the 32-hex-digit form. Uppercase is refused so that one id has
// exactly one file name.
func Parse(s string) (ID, error) {
	var id ID
	if len(s) != 2*Size {
		return id, ErrSyntax
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return id, ErrSyntax
		}
	}
	hex.Decode(id[:], []byte(s))
	return id, nil
}

// FromBytes converts a wire identifier (OCTET STRING SIZE(16)).
func FromBytes(b []byte) (ID, error) {
	var id ID
	if len(b) != Size {
		return id, errors.New("message id must be 16 octets")
	}
	copy(id[:], b)
	return id, nil
}
