// The document's selection at click time, in UTF-16 code units (Python converts to characters).
// Inputs are (document, start, end, ...rest); start and end are replaced by the textarea's selection.
(text, start, end, ...rest) => {
  const area = document.querySelector('#document textarea');
  return [text, area.selectionStart, area.selectionEnd, ...rest];
}
