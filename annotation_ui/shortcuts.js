() => {
  // Keyboard shortcuts of the ranking page. They only click the page's own controls, so the
  // server sees exactly what a mouse user would send.
  let selected = 0;
  const slots = () => [...document.querySelectorAll('.align-slot')].filter((e) => e.offsetParent !== null);
  const highlight = () => slots().forEach((e, i) => e.classList.toggle('align-selected', i === selected));
  const press = (id) => { const b = document.getElementById(id); if (b) b.click(); };
  const setRank = (index, rank) => {
    const input = document.querySelector(`#rank-${index} input[type="radio"][value="${rank}"]`);
    if (input) { input.click(); return true; }
    return false;
  };
  document.addEventListener('keydown', (ev) => {
    const t = ev.target;
    const typing = t && (t.tagName === 'TEXTAREA' || (t.tagName === 'INPUT' && t.type !== 'radio' && t.type !== 'checkbox'));
    if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); press('submit-btn'); selected = 0; return; }
    if (typing || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const n = slots().length;
    if (n === 0) return;
    const key = ev.key.toLowerCase();
    if (key >= 'a' && key <= 'h' && key.length === 1 && key.charCodeAt(0) - 97 < n) {
      selected = key.charCodeAt(0) - 97;
    } else if (key >= '1' && key <= '9' && key.length === 1) {
      if (setRank(selected, key)) selected = (selected + 1) % n;
    } else if (key === 'enter') { press('submit-btn'); selected = 0;
    } else if (key === 's') { press('skip-btn'); selected = 0;
    } else if (key === 'u') { press('undo-btn'); selected = 0;
    } else if (key === 'x') { const box = document.querySelector('#all-bad input[type="checkbox"]'); if (box) box.click();
    } else { return; }
    ev.preventDefault();
    highlight();
  });
}
