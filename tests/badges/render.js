// Reads a JSON array of badge-maker formats ({label, message, color,
// labelColor, style}) on stdin and writes the JSON array of the SVGs that
// shields.io's own renderer makes of them. Used by tests/it/badge_maker.rs;
// the package is found through NODE_PATH (tests/badges/install.sh).
'use strict'
const { makeBadge } = require('badge-maker')
let input = ''
process.stdin.setEncoding('utf8')
process.stdin.on('data', chunk => (input += chunk))
process.stdin.on('end', () => {
  const svgs = JSON.parse(input).map(format => makeBadge(format))
  process.stdout.write(JSON.stringify(svgs))
})
