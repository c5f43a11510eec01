// Renders the API reference at /api/docs with the vendored Swagger UI (a file of its own: the CSP allows no inline
// script). The document's URL comes from the page, so the reference always shows this server's own API.
(function () {
  var root = document.getElementById("swagger-ui");
  window.SwaggerUIBundle({
    url: root.getAttribute("data-spec"),
    domNode: root,
    deepLinking: true,
    tryItOutEnabled: false,
    persistAuthorization: false,
  });
})();
