// The API docs page: Swagger UI from this server (no CDN), reading this server's OpenAPI document.
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,  // never send the document to a third-party validator
  });
});
