// Integration monitor: "tick all" for the dead-letter replay form.
(function () {
  document.querySelectorAll("[data-check-all]").forEach(function (master) {
    master.addEventListener("change", function () {
      master.closest("form").querySelectorAll('input[name="message"]').forEach(function (box) {
        box.checked = master.checked;
      });
    });
  });
})();
