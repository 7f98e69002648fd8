package store

import (
	"encoding/binary"
	"encoding/hex"
	"path/filepath"

	"im2000/lib/msgid"
)

// Recipient identifiers without a file each (issue 17): a recipient id is
// the AES-256 encryption, under the store's key, of one block holding the
// first locatorSize octets of the message id and the recipient's index in
// the envelope (4 octets, big-endian). Lookup decrypts it, finds the
// message through the one link rcpt/<locator> the commit made for the
// whole message, and takes the id only if the envelope lists exactly it at
// that index. So the ids stay unguessable (a pseudorandom permutation of
// distinct blocks, 128 bits; a forged id decrypts to noise or to an index
// whose id differs) and the store keeps one inode per message, not one per
// recipient. Ids handed out before, with a link rcpt/<rid> each, keep
// working through their links.

// locatorSize is how much of the message id names it in rcpt/: the rest of
// the block is the recipient's index. 96 random bits never collide among
// the messages one store holds; if they did, the second commit would fail
// (its link exists) rather than hand out ids that lead elsewhere.
const locatorSize = msgid.Size - 4

// recipientID is the identifier of recipient i of message id.
func (s *Store) recipientID(id msgid.ID, i int) msgid.ID {
	var in, out msgid.ID
	copy(in[:locatorSize], id[:locatorSize])
	binary.BigEndian.PutUint32(in[locatorSize:], uint32(i))
	s.block.Encrypt(out[:], in[:])
	return out
}

// derived says whether recipient i of env has an identifier derived from
// the message's (and so no link of its own).
func (s *Store) derived(env *Envelope, i int) bool {
	return env.Recipients[i].ID == s.recipientID(env.ID, i)
}

// locatorPath is the link rcpt/<24 hex digits> that leads a derived
// recipient id to message id. Its name is shorter than a recipient or
// list id's, so the two kinds never meet.
func (s *Store) locatorPath(id msgid.ID) string {
	return filepath.Join(s.Root, "rcpt", hex.EncodeToString(id[:locatorSize]))
}

// decrypt returns the locator path and index a recipient id names if it
// is a derived one; the caller checks it against the envelope. The index
// stays unsigned: any 32-bit value decrypts, and as an int on a 32-bit
// machine one of 2^31 or more would be negative and pass a "< len" check.
func (s *Store) decrypt(rid msgid.ID) (string, [locatorSize]byte, uint32) {
	var plain msgid.ID
	var loc [locatorSize]byte
	s.block.Decrypt(plain[:], rid[:])
	copy(loc[:], plain[:locatorSize])
	i := binary.BigEndian.Uint32(plain[locatorSize:])
	return filepath.Join(s.Root, "rcpt", hex.EncodeToString(loc[:])), loc, i
}
