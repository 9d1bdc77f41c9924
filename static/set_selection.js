// Move the document's selection to [start, end) (UTF-16 code units) and show it.
(start, end) => {
  const area = document.querySelector('#document textarea');
  area.focus();
  area.setSelectionRange(start, end);
  return [start, end];
}
