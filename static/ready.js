// Marks the page ready once its first load (the last document reopened) has been shown; a person's
// typing before then would be overwritten, so tests and scripts wait for body[data-sharpen-ready].
() => { document.body.dataset.sharpenReady = '1'; }
