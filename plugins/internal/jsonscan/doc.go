// Package jsonscan finds members of a JSON document by byte offsets, so a
// plugin can edit one value and keep everything else byte for byte.
package jsonscan
